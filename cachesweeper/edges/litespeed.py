"""LiteSpeed / OpenLiteSpeed: tags and cache control in response headers, purges too.

LiteSpeed is told what to purge by an ``X-LiteSpeed-Purge`` header on a
response that passes through it, so purges ride on the response of the
request that swept; sweeps made outside a request (commands, workers in
this process) wait for the next response this process sends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from cachesweeper.edges.base import CachePolicy, Edge, PurgeBatch, check_name, purge_names

TAG_HEADER = "X-LiteSpeed-Tag"
CONTROL_HEADER = "X-LiteSpeed-Cache-Control"
PURGE_HEADER = "X-LiteSpeed-Purge"


class LiteSpeed(Edge):
    """LiteSpeed: ``X-LiteSpeed-Tag`` on responses; purges ride on the next response.

    OPTIONS: ``stale`` (default ``True``: purged pages may be served stale while
    LiteSpeed refetches them).
    """

    tag_header = TAG_HEADER
    separator = ","
    max_header_bytes = 8192
    options: ClassVar[dict[str, Any]] = {"stale": True}
    request_bound = True

    stale: bool

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()
        self._pending = PurgeBatch()

    def response_headers(self, names: Sequence[str], policy: CachePolicy | None) -> dict[str, str]:
        headers = super().response_headers(names, policy)
        if policy is not None:
            headers[CONTROL_HEADER] = cache_control(policy)
        return headers

    def purge(self, batch: PurgeBatch) -> None:
        """Keep the purge for the next response (see :meth:`purge_headers`)."""
        with self._lock:
            pending = self._pending
            pending.everything = pending.everything or batch.everything
            pending.names = list(dict.fromkeys([*pending.names, *purge_names(batch.names)]))
            pending.urls = list(dict.fromkeys([*pending.urls, *batch.urls]))

    def purge_headers(self) -> dict[str, str]:
        with self._lock:
            batch, self._pending = self._pending, PurgeBatch()
        if not batch:
            return {}
        if batch.everything:
            return {PURGE_HEADER: purge_value(everything=True, stale=self.stale)}
        return {PURGE_HEADER: purge_value(batch.names, batch.urls, stale=self.stale)}


def cache_control(policy: CachePolicy) -> str:
    if policy.max_age <= 0 or policy.cacheability == "no-cache":
        return "no-cache"
    return f"{policy.cacheability}, max-age={policy.max_age}"


def purge_value(
    tags: Iterable[str] = (),
    uris: Iterable[str] = (),
    *,
    stale: bool = False,
    everything: bool = False,
) -> str:
    """An ``X-LiteSpeed-Purge`` value: ``stale, tag=a, tag=b, /uri`` or ``*``.

    Tags and URIs are refused if they could split the list or the header.
    """
    parts = ["stale"] if stale else []
    if everything:
        return ", ".join([*parts, "*"])
    parts += [f"tag={check_name(tag)}" for tag in tags]
    for uri in uris:
        if not uri.startswith("/") or any(char in uri for char in ", \r\n\t;"):
            raise ValueError(f"not a purgeable path: {uri!r}")
        parts.append(uri)
    return ", ".join(parts)
