"""The background purge worker: purges leave the request path and are never lost.

Sweeps hand their names and URLs to :data:`purges` after commit. A daemon
thread delivers them per edge in batches, retries a failing edge with
exponential backoff, and a full queue *widens* (instances become their
model's tag, then a purge of everything) instead of dropping work.
Pending purges are flushed at interpreter exit, within a time limit, so
shutdown never hangs.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

from cachesweeper import signals
from cachesweeper.edges.base import Edge, PurgeBatch, widen

logger = logging.getLogger("cachesweeper")

FIRST_DELAY = 0.5
MAX_DELAY = 60.0
#: Seconds the flush at interpreter exit may take: a dead edge never hangs shutdown.
EXIT_TIMEOUT = 5.0


class _Countdown:
    """Calls ``done`` once every edge a purge went to has delivered it (the journal's cue)."""

    def __init__(self, edges: int, done: Callable[[], None]) -> None:
        self.left = edges
        self.done = done

    def tick(self) -> None:
        self.left -= 1
        if self.left == 0:
            try:
                self.done()
            except Exception:
                logger.exception("cachesweeper: a purge's completion callback failed")


@dataclass
class _Work:
    """What one edge still has to purge."""

    names: dict[str, None] = field(default_factory=dict)
    urls: dict[tuple[str | None, str], None] = field(default_factory=dict)
    everything: bool = False
    failures: int = 0
    not_before: float = 0.0
    #: Told when this edge has nothing left to purge (what they waited for included).
    waiters: list[_Countdown] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.names or self.urls or self.everything)

    def size(self) -> int:
        return len(self.names) + len(self.urls)

    def take(self, limit: int) -> PurgeBatch:
        """A batch of at most ``limit`` names or URLs of one host (or everything)."""
        if self.everything:
            self.everything, self.names, self.urls = False, {}, {}
            return PurgeBatch(everything=True)
        if self.names:
            names = list(self.names)[:limit]
            for name in names:
                del self.names[name]
            return PurgeBatch(names=names)
        host = next(iter(self.urls))[0]
        urls = [path for (url_host, path) in self.urls if url_host == host][:limit]
        for path in urls:
            del self.urls[(host, path)]
        return PurgeBatch(urls=urls, host=host)

    def give_back(self, batch: PurgeBatch) -> None:
        self.everything = self.everything or batch.everything
        self.names.update(dict.fromkeys(batch.names))
        self.urls.update(dict.fromkeys((batch.host, path) for path in batch.urls))


@dataclass
class Stats:
    """Purge counts: ``queued``, ``delivered`` and ``widened`` count purges (a name, a URL,
    or one "everything"); ``failed`` counts failed purge calls, one per batch an edge
    refused or could not be reached for, each retried or widened.
    """

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    widened: int = 0


class PurgeQueue:
    """Per-edge pending purges, delivered by one daemon thread."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.stats = Stats()
        self._work: dict[Edge, _Work] = {}
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._in_flight = 0

    def put(
        self,
        edges: Iterable[Edge],
        names: Iterable[str] = (),
        urls: Iterable[str] = (),
        host: str | None = None,
        everything: bool = False,
        done: Callable[[], None] | None = None,
    ) -> None:
        """Queue a purge on every edge in ``edges``; returns at once.

        ``done`` is called (by the worker thread) once every one of those edges
        has delivered it, or a wider purge that covers it.
        """
        names, urls, edges = list(names), list(urls), list(edges)
        countdown = _Countdown(len(edges), done) if done is not None and edges else None
        with self._condition:
            for edge in edges:
                work = self._work.setdefault(edge, _Work())
                if countdown is not None:
                    work.waiters.append(countdown)
                work.names.update(dict.fromkeys(names))
                work.urls.update(dict.fromkeys((host, url) for url in urls))
                work.everything = work.everything or everything
                self.stats.queued += len(names) + len(urls) + int(everything)
                self._bound(edge, work)
            self._start()
            self._condition.notify_all()

    def pending(self) -> int:
        """Purges not yet delivered, counting a batch that is being sent."""
        with self._condition:
            queued = sum(work.size() + int(work.everything) for work in self._work.values())
            return queued + self._in_flight

    def hand_over(self) -> tuple[list[str], list[str]] | None:
        """Empty the queue, returning the names and URL paths still pending on any edge.

        For the journal at exit, which keeps them for a relay; ``None`` (and the
        queue left as it is) when an edge waits to purge everything, which a
        journal row does not express.
        """
        with self._condition:
            if any(work.everything for work in self._work.values()):
                return None
            names: dict[str, None] = {}
            urls: dict[str, None] = {}
            for work in self._work.values():
                names.update(work.names)
                urls.update(dict.fromkeys(path for _, path in work.urls))
                work.names, work.urls = {}, {}
            return list(names), list(urls)

    def flush(self, timeout: float = 10.0) -> bool:
        """Deliver everything pending now (ignoring backoff); ``True`` when nothing is left."""
        deadline = time.monotonic() + timeout
        with self._condition:
            for work in self._work.values():
                work.not_before = 0.0
            self._start()
            self._condition.notify_all()
            while any(self._work.values()) or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.1))
                for work in self._work.values():
                    work.not_before = min(work.not_before, time.monotonic() + 0.2)
            return True

    def _bound(self, edge: Edge, work: _Work) -> None:
        """Widen instead of dropping when an edge's queue is full."""
        if work.size() <= self.limit:
            return
        self.stats.widened += 1
        work.names = dict.fromkeys(widen(work.names))
        if work.size() > self.limit:
            logger.warning(
                "cachesweeper: purge queue for %s is full; purging everything", edge.label
            )
            work.names, work.urls, work.everything = {}, {}, True
        else:
            logger.warning(
                "cachesweeper: purge queue for %s is full; widened to models", edge.label
            )

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="cachesweeper-purge", daemon=True
            )
            self._thread.start()

    def _next(self) -> tuple[Edge, PurgeBatch] | None:
        """Wait for a batch that is due; called with the condition held."""
        while True:
            now = time.monotonic()
            due = [
                (edge, work)
                for edge, work in self._work.items()
                if work and work.not_before <= now
            ]
            if due:
                edge, work = due[0]
                self._busy = True
                batch = work.take(edge.max_batch)
                self._in_flight = len(batch.names) + len(batch.urls) + int(batch.everything)
                return edge, batch
            waits = [work.not_before - now for work in self._work.values() if work]
            self._condition.notify_all()
            self._condition.wait(min(waits) if waits else 30.0)

    def _run(self) -> None:
        while True:
            with self._condition:
                edge, batch = self._next()  # type: ignore[misc]
            error = _deliver(edge, batch)
            finished: list[_Countdown] = []
            with self._condition:
                self._busy, self._in_flight = False, 0
                work = self._work.setdefault(edge, _Work())
                count = len(batch.names) + len(batch.urls) + int(batch.everything)
                if error is None:
                    work.failures = 0
                    self.stats.delivered += count
                elif isinstance(error, _UNSENDABLE) and not batch.everything:
                    # Retrying cannot help (a bad name, no public host): purge
                    # everything instead, which any edge can do.
                    logger.error(
                        "cachesweeper: %d names and %d URLs cannot be purged on %s; "
                        "purging everything instead",
                        len(batch.names),
                        len(batch.urls),
                        edge.label,
                    )
                    work.everything = True
                    self.stats.failed += 1
                    self.stats.widened += 1
                elif isinstance(error, _UNSENDABLE):
                    logger.error(
                        "cachesweeper: %s cannot purge everything (%s); the purge is given up",
                        edge.label,
                        error,
                    )
                    self.stats.failed += 1
                else:
                    work.give_back(batch)
                    work.failures += 1
                    work.not_before = time.monotonic() + min(
                        MAX_DELAY, FIRST_DELAY * 2 ** (work.failures - 1)
                    )
                    self.stats.failed += 1
                    self._bound(edge, work)
                if not work:
                    finished, work.waiters = work.waiters, []
                self._condition.notify_all()
            for countdown in finished:
                countdown.tick()


_UNSENDABLE = (ValueError, ImproperlyConfigured)


def _deliver(edge: Edge, batch: PurgeBatch) -> Exception | None:
    try:
        edge.purge(batch)
    except Exception as error:
        logger.error(
            "cachesweeper: purge of %d names and %d URLs on %s failed (%s); will retry",
            len(batch.names),
            len(batch.urls),
            edge.label,
            error,
        )
        if signals.purge_failed.receivers:
            signals.purge_failed.send(
                sender=type(edge), edge=edge, error=error, dependencies=batch.names
            )
        return error
    if signals.purge_sent.receivers:
        signals.purge_sent.send(sender=type(edge), edge=edge, dependencies=batch.names)
    return None


#: The process's purge queue.
purges = PurgeQueue()


@atexit.register
def flush_at_exit() -> None:
    """Deliver what is pending before the interpreter exits, for ``EXIT_TIMEOUT`` at most.

    Also called by the sweeps' own exit hook, after its last retries: their
    purges are queued then, possibly after this hook already ran.
    """
    if purges.pending() and not purges.flush(timeout=EXIT_TIMEOUT):
        logger.error(
            "cachesweeper: %d purges could not be delivered before exit", purges.pending()
        )
