"""The retry queue: bumps that could not reach the version cache, retried until they land.

A sweep is never silently lost (DESIGN, "Fail open"). While a name waits
here its token cannot be trusted, so the read path (:mod:`cachesweeper.entries`)
reads :attr:`RetryQueue.unconfirmed` and renders content on it afresh; it
calls :meth:`RetryQueue.poke` when the cache answers again. This module
imports nothing of the read path.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from django.core.cache import caches

from cachesweeper import outages, signals, tokens
from cachesweeper.conf import conf
from cachesweeper.edges.loading import dispatch
from cachesweeper.edges.queue import flush_at_exit

logger = logging.getLogger("cachesweeper")


def landed(
    names: Sequence[str], urls: Sequence[str], done: Callable[[], None] | None = None
) -> None:
    """Bumps of ``names`` landed: purge them (and ``urls``) at the edges, and say so.

    ``done`` is called once the edges took the purges (the journal's cue).
    """
    if names or urls or done is not None:
        _purge(names, urls, done)
    if names and signals.swept.receivers:
        signals.swept.send(sender=None, dependencies=list(names))


def without(names: Sequence[str], failed: Iterable[str]) -> list[str]:
    """``names`` minus ``failed``, in order: what landed of one attempt."""
    failed = set(failed)
    return [name for name in names if name not in failed] if failed else list(names)


def _purge(names: Sequence[str], urls: Sequence[str], done: Callable[[], None] | None) -> None:
    try:
        dispatch(names, urls, done=done)
    except Exception:
        logger.exception("cachesweeper: could not hand %d purges to the edges", len(names))


def attempt(names: Iterable[str]) -> list[str]:
    """One attempt to bump the names' tokens in the version cache; return the names that failed.

    One round trip (:func:`cachesweeper.tokens.bump`); an unreachable cache
    is reported as an outage and fails them all.
    """
    names = list(names)
    try:
        return tokens.bump(caches[conf.VERSION_CACHE], names)
    except Exception as error:
        outages.report(repr(conf.VERSION_CACHE), "sweep not delivered yet", error)
        return names


class RetryQueue:
    """Bumps that failed, retried with exponential backoff by a daemon thread."""

    def __init__(self) -> None:
        self._names: dict[str, int] = {}  # name -> how many times it was queued
        #: Names also in the journal: a relay finishes them if this process cannot.
        self.journaled: set[str] = set()
        self._urls: dict[str, None] = {}  # URL purges waiting for the bumps to land
        self._queued = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._poked = 0.0
        self._restart = False
        self.first_delay = 0.5
        self.max_delay = 30.0
        #: Names whose latest sweep has not reached the version cache yet: their
        #: tokens cannot be trusted, so content on them is rendered, not served
        #: from an entry or stored. A frozenset swapped whole under the lock, so
        #: the read path reads it without taking the lock.
        self.unconfirmed: frozenset[str] = frozenset()

    def add(self, names: Iterable[str], urls: Iterable[str] = (), journaled: bool = False) -> None:
        """Queue failed bumps; ``urls`` are purged once every queued bump has landed.

        ``journaled``: the sweep is in the journal too, so it outlives this process.
        """
        names = list(names)
        with self._lock:
            idle = not self._names
            if journaled:
                self.journaled.update(names)
            for name in names:
                self._queued += 1
                self._names[name] = self._queued
            self._urls.update(dict.fromkeys(urls))
            self.unconfirmed = frozenset(self._names)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="cachesweeper-retry", daemon=True
                )
                self._thread.start()
            elif idle:
                # The queue was emptied (by a flush) while the thread waited out a
                # backoff: new work starts the backoff again instead of inheriting it.
                self._restart = True
                self._wake.set()

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._names)

    def flush(self) -> list[str]:
        """Try every pending bump once; return what still failed.

        Names stay pending while the bump is under way, and a name queued
        again meanwhile stays pending: only what this attempt covered is done.
        """
        with self._lock:
            covered = dict(self._names)
        names = list(covered)
        failed = set(attempt(names)) if names else set()
        urls: list[str] = []
        with self._lock:
            for name, queued in covered.items():
                if name not in failed and self._names.get(name) == queued:
                    del self._names[name]
                    self.journaled.discard(name)
            self.unconfirmed = frozenset(self._names)
            if not self._names:
                urls, self._urls = list(self._urls), {}
        landed(without(names, failed), urls)
        return [name for name in names if name in failed]

    def poke(self) -> None:
        """The cache answers again: retry now rather than after the backoff (at most 10/s)."""
        now = time.monotonic()
        if now - self._poked >= 0.1:
            self._poked = now
            self._wake.set()

    def _run(self) -> None:
        delay = self.first_delay
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            with self._lock:
                restart, self._restart = self._restart, False
            if restart:
                delay = self.first_delay
                continue
            failed = self.flush()
            if failed:
                delay = min(delay * 2, self.max_delay)
                logger.error("cachesweeper: %d sweeps still pending; retrying", len(failed))
                continue
            with self._lock:
                if not self._names:
                    self._thread = None
                    return
            delay = self.first_delay


#: The process's retry queue; the read path reads its ``unconfirmed`` names.
queue = RetryQueue()


@atexit.register
def _flush_at_exit() -> None:
    failed = queue.flush()
    kept = [name for name in failed if name in queue.journaled]
    lost = [name for name in failed if name not in queue.journaled]
    if kept:
        logger.warning(
            "cachesweeper: %d sweeps left in the journal at exit, for a relay to finish: %s",
            len(kept),
            ", ".join(kept),
        )
    if lost:
        logger.error("cachesweeper: %d sweeps lost at exit: %s", len(lost), ", ".join(lost))
    # Bumps that landed just now queued their purges; the purge queue's own exit
    # hook may have run already (the last registered runs first), so flush it again.
    flush_at_exit()
