"""The relay: finishes the sweeps left in the journal, whoever made them.

A row stays in the journal when its process died between the commit and the
bump, when the version cache did not take the bump, or while an edge has not
taken the purge. Every process that journals a sweep starts a relay thread
(lazily, the first time); ``manage.py cachesweeper relay`` runs one in the
foreground for a dedicated worker. A relay claims rows older than
``RELAY_DELAY`` seconds (their own process had its chance), bumps their
names, hands their purges to the edges and deletes them once delivered.
Claims keep two relays off one row; a row replayed twice costs one miss.

With ``DATABASE_TRIGGERS`` the thread listens (``LISTEN``) for the
triggers' ``NOTIFY`` (:mod:`cachesweeper.listening`) instead of sleeping between passes.

The thread leaves in-memory SQLite databases alone: no other process can
see their journal, and this one's retry queue already has what failed.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from cachesweeper import journal, retries
from cachesweeper.conf import conf
from cachesweeper.edges.queue import EXIT_TIMEOUT, purges

logger = logging.getLogger("cachesweeper")

#: Seconds a claim lasts: time enough to bump and purge, short enough after a crash.
HOLD = 10.0
#: Seconds before a row whose bump failed is tried again.
RETRY = 1.0
#: Seconds between two looks at the journal.
INTERVAL = 1.0
#: Rows claimed at once.
LIMIT = 500
#: Seconds between two warnings about one database's journal failing.
WARN_EVERY = 60.0


class Relay:
    """Rows this process is finishing, and the thread that replays the journal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        #: alias -> row id -> when its purges were handed to the edges (monotonic)
        self._waiting: dict[str, dict[int, float]] = {}
        #: row (alias, id) -> the names and URL paths its purges cover
        self._covers: dict[tuple[str, int], tuple[Sequence[str], Sequence[str]]] = {}
        #: alias -> row ids whose sweep is done, to delete
        self._done: dict[str, set[int]] = {}
        self._warned: dict[str, float] = {}  # alias -> when its failure was last warned of
        #: alias -> (key, names its sweep bumped) of autocommit saves whose trigger rows
        #: to take (:func:`cachesweeper.triggers.arm`)
        self._armed: dict[str, list[tuple[str, frozenset[str]]]] = {}

    # -- rows this process is finishing ----------------------------------------------------

    def finisher(
        self, alias: str, ids: Sequence[int], names: Sequence[str], urls: Sequence[str]
    ) -> Callable[[], None]:
        """The callback that marks rows ``ids`` done once their purges (``names``,
        ``urls``) are delivered.
        """
        ids = list(ids)
        now = time.monotonic()
        with self._lock:
            waiting = self._waiting.setdefault(alias, {})
            for row in ids:
                waiting[row] = now
                self._covers[(alias, row)] = (names, urls)

        def finished() -> None:
            with self._lock:
                waiting = self._waiting.get(alias, {})
                for row in ids:
                    waiting.pop(row, None)
                    self._covers.pop((alias, row), None)
                self._done.setdefault(alias, set()).update(ids)
            self._wake.set()

        return finished

    def abandon(self, alias: str, ids: Iterable[int]) -> None:
        """Rows ``ids`` stay in the journal for a relay to replay (their bump failed)."""
        with self._lock:
            waiting = self._waiting.get(alias, {})
            for row in ids:
                waiting.pop(row, None)
                self._covers.pop((alias, row), None)

    def covered(self) -> tuple[set[str], set[str]]:
        """The names and URL paths of the purges rows in this process's hands cover."""
        names: set[str] = set()
        urls: set[str] = set()
        with self._lock:
            for row_names, row_urls in self._covers.values():
                names.update(row_names)
                urls.update(row_urls)
        return names, urls

    def settle(self, alias: str) -> None:
        """Delete the rows of ``alias`` that are done (one ``DELETE``, none if nothing is)."""
        with self._lock:
            done = self._done.pop(alias, set())
        if not done:
            return
        try:
            journal.forget(alias, done)
        except Exception:
            with self._lock:
                self._done.setdefault(alias, set()).update(done)
            raise

    def settle_soon(self, alias: str) -> None:
        """Delete the rows of ``alias`` that are done, off the caller's path when it can.

        The relay thread deletes them, moments later and many sweeps' rows in
        one ``DELETE``, so a request that saved does not wait for it. Without
        the thread (not started, or an in-memory SQLite database, which it
        leaves alone) they are deleted now. Should this process die before,
        a relay replays the rows: one miss each, nothing lost.
        """
        if not self._handed_to_thread(alias):
            self.settle(alias)

    def take_soon(self, alias: str, key: str, bumped: Iterable[str]) -> None:
        """Take the trigger rows of an autocommit ORM save armed with ``key``, off the
        caller's path when it can (as :meth:`settle_soon`).

        Its sweep bumped ``bumped``; the names the rows hold besides (a trigger
        may name more than the signals) are swept then. Should this process
        die before, a relay replays the rows after ``RELAY_DELAY``.
        """
        with self._lock:
            self._armed.setdefault(alias, []).append((key, frozenset(bumped)))
        if not self._handed_to_thread(alias):
            self.take(alias)

    def _handed_to_thread(self, alias: str) -> bool:
        """Wake the relay thread to do the work for ``alias``; ``False`` when it cannot
        (not running, or an in-memory SQLite database, which it leaves alone)."""
        if self.running() and not journal.in_memory(alias):
            self._wake.set()
            return True
        return False

    def take(self, alias: str) -> None:
        """Delete the trigger rows :meth:`take_soon` was given, and sweep what else they name.

        One ``DELETE`` for all of them, in a transaction with the sweep: a failed
        bump is journaled in it (see ``sweep_now``), and if this process dies
        meanwhile, the rows stay for a relay.
        """
        from cachesweeper import sweeps, triggers

        with self._lock:
            armed = dict(self._armed.pop(alias, []))
        if not armed:
            return
        with transaction.atomic(using=alias):
            found = triggers.take(connections[alias], list(armed))
            bumped = {key: armed[key] for key, _ in found}
            extra = [name for key, names in found for name in names if name not in bumped[key]]
            if extra:
                sweeps.sweep_now(list(dict.fromkeys(extra)), database=alias)

    def _hold_slow(self, alias: str) -> None:
        """Rows whose purges have waited a while stay claimed: no relay bumps them again."""
        cutoff = time.monotonic() - min(conf.RELAY_DELAY / 2, INTERVAL)
        with self._lock:
            slow = [row for row, since in self._waiting.get(alias, {}).items() if since < cutoff]
        if slow:
            journal.hold(alias, slow, HOLD, bumped=True)

    # -- replaying ---------------------------------------------------------------------------

    def replay(self, alias: str, older_than: float | None = None) -> int:
        """Claim rows of ``alias`` older than ``older_than`` seconds and finish them.

        Returns how many rows were taken on: bumped (or only purged, when their
        bump had landed), with their purges handed to the edges.
        """
        delay = conf.RELAY_DELAY if older_than is None else older_than
        rows = journal.claim(alias, delay, LIMIT, HOLD)
        if not rows:
            return 0
        fresh = [row for row in rows if not row.bumped]
        names = list(dict.fromkeys(name for row in fresh for name in row.names))
        failed = retries.attempt(names) if names else []
        if failed:
            if self._due(f"bump {alias}"):
                logger.error(
                    "cachesweeper: the relay could not reach the version cache to sweep %d "
                    "journaled names of %s; it tries again every %g s",
                    len(names),
                    alias,
                    RETRY,
                )
            journal.hold(alias, [row.id for row in fresh], RETRY)
            rows = [row for row in rows if row.bumped]
            if not rows:
                return 0
        purged = list(dict.fromkeys(name for row in rows for name in row.names))
        urls = list(dict.fromkeys(url for row in rows for url in row.urls))
        retries.landed(
            purged, urls, done=self.finisher(alias, [row.id for row in rows], purged, urls)
        )
        self.settle(alias)
        return len(rows)

    def tick(
        self,
        aliases: Iterable[str] | None = None,
        older_than: float | None = None,
        replaying: bool = True,
    ) -> int:
        """One pass over the journals: delete what is done, keep slow rows, replay the rest.

        ``replaying=False``: only delete what is done.
        """
        replayed = 0
        for alias in settings.DATABASES if aliases is None else aliases:
            try:
                if not journal.usable(alias):
                    continue
                _reconnect_if_broken(alias)
                self.settle(alias)
                self.take(alias)
                if replaying:
                    self._hold_slow(alias)
                    replayed += self.replay(alias, older_than)
            except Exception as error:
                logger.debug("cachesweeper: relay failure on %s", alias, exc_info=True)
                if self._due(alias):
                    logger.warning(
                        "cachesweeper: the relay could not replay the journal of %s (%s); "
                        "it tries again every %g s",
                        alias,
                        error,
                        INTERVAL,
                    )
        return replayed

    def _due(self, topic: str) -> bool:
        """Whether a failure about ``topic`` may be logged now (once per ``WARN_EVERY``)."""
        now = time.monotonic()
        with self._lock:
            if now - self._warned.get(topic, -WARN_EVERY) < WARN_EVERY:
                return False
            self._warned[topic] = now
            return True

    # -- the thread ----------------------------------------------------------------------------

    def running(self) -> bool:
        """Whether this process's relay thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the relay thread of this process, once."""
        if self.running():
            return
        with self._lock:
            if self.running():
                return
            self._thread = threading.Thread(
                target=self._run, name="cachesweeper-relay", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        # With database triggers, a NOTIFY wakes the relay moments after a commit.
        from cachesweeper.listening import Listener

        listener = Listener()
        due = time.monotonic()
        while True:
            notified = listener.wait(max(0.0, due - time.monotonic()), self._wake)
            self._wake.clear()
            aliases = [alias for alias in settings.DATABASES if not journal.in_memory(alias)]
            if notified or time.monotonic() >= due:
                self.tick(aliases)
                due = time.monotonic() + INTERVAL
            else:  # woken by a finished sweep of this process: its row is all there is to do
                self.tick(aliases, replaying=False)

    def release(self) -> None:
        """At exit: delete what is done; rows still held go back to the other relays at once."""
        with self._lock:
            aliases = set(self._done) | set(self._waiting) | set(self._armed)
        for alias in aliases:
            try:
                self.take(alias)
                self.settle(alias)
                with self._lock:
                    ids = list(self._waiting.pop(alias, {}))
                    for row in ids:
                        self._covers.pop((alias, row), None)
                journal.release(alias, ids)
            except Exception:
                logger.debug("cachesweeper: could not release journal rows", exc_info=True)

    def watching(self) -> bool:
        """Whether this process has journal rows in hand (waiting for purges, or done)."""
        with self._lock:
            return any(self._waiting.values()) or any(self._done.values())


def _reconnect_if_broken(alias: str) -> None:
    """The thread keeps its connection between passes (a worker's, not a request's),
    unless it failed: a restarted database then gets a new one.
    """
    connection = connections[alias]
    if connection.connection is not None and connection.errors_occurred:
        if not connection.is_usable():
            connection.close()
        connection.errors_occurred = False


#: The process's relay.
relay = Relay()


def hand_over_purges(alias: str) -> int | None:
    """Journal the purges the edges did not take (a row whose bump is done); its id.

    At exit, so that purges for a down edge outlive the process even when
    their sweep was made outside a transaction, with no row of its own. What
    the journal holds already (rows in this process's hands) is left out.
    """
    left = purges.hand_over()
    if left is None:
        return None
    names, urls = relay.covered()
    left_names = [name for name in left[0] if name not in names]
    left_urls = [url for url in left[1] if url not in urls]
    if not (left_names or left_urls) or not journal.usable(alias):
        return None
    return journal.record(alias, left_names, left_urls, bumped=True)


@atexit.register
def _finish_at_exit() -> None:
    # Registered after the retry and purge queues' hooks, so it runs before them:
    # flush them first, so that what they deliver now is deleted from the journal,
    # and what they cannot deliver is journaled instead of reported lost.
    if relay.watching():
        retries.queue.flush()
    if purges.pending() and not purges.flush(timeout=EXIT_TIMEOUT) and conf.JOURNAL:
        alias = DEFAULT_DB_ALIAS
        if not journal.in_memory(alias) and hand_over_purges(alias) is not None:
            logger.warning("cachesweeper: purges left in the journal at exit, for a relay")
    relay.release()
