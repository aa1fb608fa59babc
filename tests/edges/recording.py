"""An in-process edge that records the purges it is given (for queue and sweep tests)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from cachesweeper.edges.base import Edge, PurgeBatch


class RecordingEdge(Edge):
    """Records batches; fails the next ``failures`` deliveries, as an unreachable edge would."""

    tag_header = "X-Test-Tags"
    max_batch = 3
    options: ClassVar[dict[str, Any]] = {"name": "recording"}

    received: ClassVar[list[PurgeBatch]] = []
    failures: ClassVar[int] = 0
    attempts: ClassVar[int] = 0
    lock = threading.Lock()

    @classmethod
    def reset(cls, failures: int = 0) -> None:
        with cls.lock:
            cls.received.clear()
            cls.failures = failures
            cls.attempts = 0

    def purge(self, batch: PurgeBatch) -> None:
        with self.lock:
            type(self).attempts += 1
            if type(self).failures > 0:
                type(self).failures -= 1
                raise ConnectionRefusedError("edge unreachable")
            self.received.append(batch)

    @classmethod
    def names(cls) -> set[str]:
        return {name for batch in cls.received for name in batch.names}

    @classmethod
    def urls(cls) -> set[tuple[str | None, str]]:
        return {(batch.host, url) for batch in cls.received for url in batch.urls}
