"""The relay's ear: ``LISTEN cachesweeper`` on the PostgreSQL databases with triggers.

A trigger's journal row is due at once (no process waits to bump it), so the
relay should not sleep its polling interval before replaying it: it waits
on a ``NOTIFY`` instead, and wakes within milliseconds of the commit. The
connection is psycopg's own, outside Django's (which a thread keeps per
thread and may close); when it cannot be opened or breaks, the relay polls
as before, and tries to listen again on its next wait.
"""

from __future__ import annotations

import logging
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


class Listener:
    """Waits for a notification on any listened database, or a timeout."""

    def __init__(self) -> None:
        self._connections: dict[str, Any] = {}
        self._failed: dict[str, float] = {}

    def _open(self) -> None:
        if not conf.DATABASE_TRIGGERS:
            return
        for alias in settings.DATABASES:
            if alias in self._connections or time.monotonic() - self._failed.get(alias, -60) < 60:
                continue
            try:
                if not wanted(alias):
                    continue
                import psycopg

                params = connections[alias].get_connection_params()
                params.pop("cursor_factory", None)
                params.pop("context", None)
                connection = psycopg.connect(**params, autocommit=True)
                connection.execute(f"LISTEN {CHANNEL}")
                self._connections[alias] = connection
            except Exception:
                self._failed[alias] = time.monotonic()
                logger.warning(
                    "cachesweeper: the relay cannot LISTEN on %s; it polls instead",
                    alias,
                    exc_info=True,
                )

    def listening(self) -> bool:
        """Whether some database is listened to (else the caller polls)."""
        self._open()
        return bool(self._connections)

    def wait(self, timeout: float, wake: threading.Event) -> bool:
        """Wait up to ``timeout`` s for a notification or ``wake``; whether a notification
        came.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not wake.is_set():
            if not self.listening():
                wake.wait(max(0.0, deadline - time.monotonic()))
                return False
            share = min(SLICE, max(0.0, deadline - time.monotonic())) / len(self._connections)
            for alias, connection in list(self._connections.items()):
                try:
                    if any(True for _ in connection.notifies(timeout=share, stop_after=1)):
                        self._drain(connection)
                        return True
                except Exception:
                    logger.debug("cachesweeper: LISTEN on %s broke", alias, exc_info=True)
                    self._connections.pop(alias, None)
                    connection.close()
        return False

    @staticmethod
    def _drain(connection: Any) -> None:
        """Notifications already received: one pass replays them all."""
        for _ in connection.notifies(timeout=0.0):
            pass

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
