"""Edges that fail in the sweeping code's own thread (request-bound, like LiteSpeed)."""

from __future__ import annotations

from typing import ClassVar

from cachesweeper.edges.base import Edge, PurgeBatch


class RaisingEdge(Edge):
    """Its ``purge`` raises at once, in the thread that swept."""

    tag_header = "X-Raising-Tags"
    request_bound: ClassVar[bool] = True

    def purge(self, batch: PurgeBatch) -> None:
        raise RuntimeError("edge exploded")
