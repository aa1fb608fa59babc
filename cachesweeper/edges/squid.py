"""Squid (or any cache that understands ``PURGE <url>``): purges by URL only.

Settings::

    CACHESWEEPER = {"EDGES": [{
        "BACKEND": "cachesweeper.edges.Squid",
        "OPTIONS": {"servers": ["http://127.0.0.1:3128"], "host": "www.example.com"},
    }]}

Squid has no tags, so the dependency names of a sweep cannot reach it: give
the URLs to purge with ``get_absolute_url`` or ``register(Model,
purge_urls=...)``. Each URL is sent as ``PURGE <path>`` with ``Host: <public
host>`` to every server (Squid as a reverse proxy keys objects on that
host). Squid must allow it, e.g.::

    acl purge method PURGE
    http_access allow purge localhost
    http_access deny purge

Squid answers 200 when it removed the object and 404 when it had none: both
mean the URL is no longer cached.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from cachesweeper.edges.base import Edge, PurgeBatch
from cachesweeper.edges.httppurge import (
    PurgeFailed,
    PurgeRequest,
    Server,
    parse_hosts,
    parse_servers,
    public_hosts,
    send,
    url_targets,
)

__all__ = ["PurgeFailed", "Squid"]

logger = logging.getLogger("cachesweeper.edges")


class Squid(Edge):
    """Purge URLs from Squid; names are ignored and "everything" cannot be done.

    ``servers``: base URLs of every Squid (each gets every purge). ``host``:
    the site's public host name(s); by default the host of the request that
    swept, else the first plain ``ALLOWED_HOSTS`` entry.
    """

    tag_header = None
    options: ClassVar[dict[str, Any]] = {"servers": None, "host": None}

    #: Seconds for connecting and for each read; a hung Squid fails the batch, which is retried.
    timeout: ClassVar[float] = 5.0

    servers: Any
    host: Any

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._servers: list[Server] = parse_servers(self.label, self.servers)
        self._hosts: list[str] = parse_hosts(self.label, self.host)

    def purge(self, batch: PurgeBatch) -> None:
        """Purge ``batch.urls`` on every server; raise :class:`PurgeFailed` if any failed.

        A purge of everything is logged as an error and not raised: Squid has
        no way to do it, and raising would only make the worker retry forever.
        """
        if batch.everything:
            logger.error(
                "cachesweeper: Squid cannot purge everything; pages it cached stay until "
                "they expire (restart Squid or clear its cache_dir to empty it now)"
            )
        requests = self.requests(batch)
        if requests:
            send(self.label, self._servers, requests, ok=_is_success, timeout=self.timeout)

    def requests(self, batch: PurgeBatch) -> list[PurgeRequest]:
        """One ``PURGE`` per URL and public host; dependency names have no Squid equivalent."""
        return [
            PurgeRequest(path, {"Host": host})
            for host, path in url_targets(
                self.label, batch.urls, lambda: public_hosts(self.label, self._hosts, batch.host)
            )
        ]


def _is_success(status: int) -> bool:
    """200: purged; 404: it was not cached. Either way the URL is gone."""
    return 200 <= status < 300 or status == 404
