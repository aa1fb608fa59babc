"""The relay's ear: ``LISTEN cachesweeper`` on the PostgreSQL databases with triggers.

A trigger's journal row is due at once (no process waits to bump it), so the
relay should not sleep its polling interval before replaying it: it waits
on a ``NOTIFY`` instead, and wakes within milliseconds of the commit. The
connection is psycopg's own, outside Django's (which a thread keeps per
thread and may close); when it cannot be opened or breaks, the relay polls
as before, and tries to listen again on its next wait.

One relay listens per database: the one holding an advisory lock (:data:`LOCK`)
on its listening connection. Were every process listening, each
notification would wake them all, and each would run a claim on the journal
for one row. The others poll as before and try for the lock every
:data:`STANDBY` seconds; when the listener's process dies, its session ends,
the lock is free, and another relay takes over within that time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connections

from cachesweeper.conf import conf
from cachesweeper.triggers import CHANNEL, wanted

logger = logging.getLogger("cachesweeper")

#: Seconds between two looks at ``wake`` while waiting on notifications.
SLICE = 0.1
#: The advisory lock (``pg_try_advisory_lock``) the listening relay of a database holds.
LOCK = 0x63735F72  # "cs_r"
#: Seconds between two tries for the lock by a relay that does not hold it.
STANDBY = 1.0
#: Seconds before a database that could not be connected to is tried again.
RETRY = 60.0


class Listener:
    """Waits for a notification on any database it listens to, or a timeout."""

    def __init__(self) -> None:
        self._connections: dict[str, Any] = {}  # alias -> open connection, listening or not
        self._listening: set[str] = set()  # aliases whose lock this listener holds
        self._tried: dict[str, float] = {}  # alias -> when the lock was last tried
        self._failed: dict[str, float] = {}  # alias -> when connecting last failed

    def _open(self) -> None:
        if not conf.DATABASE_TRIGGERS:
            return
        now = time.monotonic()
        for alias in settings.DATABASES:
            if (
                alias in self._listening
                or now - self._failed.get(alias, -RETRY) < RETRY
                or now - self._tried.get(alias, -STANDBY) < STANDBY
            ):
                continue
            self._tried[alias] = now
            try:
                connection = self._connections.get(alias)
                if connection is None:
                    if not wanted(alias):
                        continue
                    connection = self._connections[alias] = _connect(alias)
                if connection.execute("SELECT pg_try_advisory_lock(%s)", [LOCK]).fetchone()[0]:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._listening.add(alias)
            except Exception:
                self._drop(alias)
                self._failed[alias] = now
                logger.warning(
                    "cachesweeper: the relay cannot LISTEN on %s; it polls instead",
                    alias,
                    exc_info=True,
                )

    def _drop(self, alias: str) -> None:
        self._listening.discard(alias)
        connection = self._connections.pop(alias, None)
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.debug("cachesweeper: could not close a LISTEN connection", exc_info=True)

    def listening(self) -> bool:
        """Whether this relay listens to some database (else the caller polls)."""
        self._open()
        return bool(self._listening)

    def wait(self, timeout: float, wake: threading.Event) -> bool:
        """Wait up to ``timeout`` s for a notification or ``wake``; whether a notification
        came.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not wake.is_set():
            if not self.listening():  # a standby: tries for the lock again every STANDBY s
                wake.wait(min(STANDBY, max(0.0, deadline - time.monotonic())))
                continue
            share = min(SLICE, max(0.0, deadline - time.monotonic())) / len(self._listening)
            for alias in list(self._listening):
                connection = self._connections[alias]
                try:
                    if any(True for _ in connection.notifies(timeout=share, stop_after=1)):
                        self._drain(connection)
                        return True
                except Exception:
                    logger.debug("cachesweeper: LISTEN on %s broke", alias, exc_info=True)
                    self._drop(alias)
        return False

    @staticmethod
    def _drain(connection: Any) -> None:
        """Notifications already received: one pass replays them all."""
        for _ in connection.notifies(timeout=0.0):
            pass

    def close(self) -> None:
        for alias in list(self._connections):
            self._drop(alias)


def _connect(alias: str) -> Any:
    """A psycopg connection of its own to ``alias``'s database, in autocommit, named
    ``cachesweeper relay <pid>`` in ``pg_stat_activity``.
    """
    import psycopg

    params = connections[alias].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["application_name"] = f"cachesweeper relay {os.getpid()}"
    return psycopg.connect(**params, autocommit=True)
