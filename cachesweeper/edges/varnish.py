"""Varnish with the xkey vmod: responses tagged in ``xkey``, purges by tag, URL or all.

Settings::

    CACHESWEEPER = {"EDGES": [{
        "BACKEND": "cachesweeper.edges.Varnish",
        "OPTIONS": {"servers": ["http://127.0.0.1:6081"], "host": "www.example.com"},
    }]}

Varnish needs the VCL shipped next to this module (``varnish.vcl``, see
:func:`vcl_path`): it handles the purge requests sent here and strips
``xkey`` from what clients see. Purge protocol, per server:

* names: ``PURGE /`` with ``xkey-purge: <names>`` (``xkey-softpurge`` when
  ``soft``), as many requests as it takes to keep each header under the limit;
* URLs: ``PURGE <path>`` with ``Host: <public host>`` (plus ``X-Purge-Soft: 1``
  when ``soft``) -- Varnish hashes objects on the Host clients sent, so the
  cache's own address would purge nothing;
* everything: ``PURGE /`` with ``X-Purge-All: 1`` (a ban; always hard).

The VCL answers a synthetic 200; anything else raises :class:`PurgeFailed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from cachesweeper.edges.base import Edge, PurgeBatch, purge_names
from cachesweeper.edges.httppurge import (
    PurgeFailed,
    PurgeRequest,
    Server,
    pack,
    parse_hosts,
    parse_servers,
    public_hosts,
    send,
    url_targets,
)

__all__ = ["PurgeFailed", "Varnish", "vcl_path"]

#: Varnish refuses a header line (name, ``": "`` and value) over ``http_req_hdr_len`` /
#: ``http_resp_hdr_len``, 8 KB by default: a request gets 400, a backend response a 503.
#: 8000 bytes of value leaves room for the longest header name used here.
HEADER_LIMIT = 8000


def vcl_path() -> Path:
    """The VCL this backend expects Varnish to run (a starting point to copy)."""
    return Path(__file__).with_name("varnish.vcl")


class Varnish(Edge):
    """Tag responses for xkey and purge them by tag, by URL, or all at once.

    ``servers``: base URLs of every Varnish to purge (each gets every purge).
    ``host``: the site's public host name(s) for URL purges; by default the
    host of the request that swept, else the first plain ``ALLOWED_HOSTS``
    entry. ``soft``: expire instead of evict, so Varnish may serve the old
    copy for its grace time while it refetches (purge-all stays hard).
    ``esi`` (default ``False``): a page with holes goes to Varnish with an ESI
    include per hole and stays shared, for requests that announce ``ESI/1.0``
    in ``Surrogate-Capability`` (the shipped VCL does, and processes them;
    see :mod:`cachesweeper.esi`). Needs ``cachesweeper.urls`` in the URLconf.
    """

    tag_header = "xkey"
    separator = " "
    max_header_bytes = HEADER_LIMIT
    options: ClassVar[dict[str, Any]] = {
        "servers": None,
        "host": None,
        "soft": False,
        "esi": False,
    }

    #: Seconds for connecting and for each read; a hung Varnish fails the batch, which is retried.
    timeout: ClassVar[float] = 5.0

    servers: Any
    host: Any
    soft: Any
    esi: Any

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._servers: list[Server] = parse_servers(self.label, self.servers)
        self._hosts: list[str] = parse_hosts(self.label, self.host)
        for flag in ("soft", "esi"):
            if not isinstance(getattr(self, flag), bool):
                raise ImproperlyConfigured(
                    f"{self.label}: OPTIONS[{flag!r}] must be True or False"
                )

    def purge(self, batch: PurgeBatch) -> None:
        """Send ``batch`` to every server; raise :class:`PurgeFailed` if any did not confirm."""
        requests = self.requests(batch)
        if requests:
            send(self.label, self._servers, requests, ok=_is_success, timeout=self.timeout)

    def requests(self, batch: PurgeBatch) -> list[PurgeRequest]:
        """The requests that purge ``batch`` from one Varnish (validated before any is sent)."""
        if batch.everything:
            return [PurgeRequest("/", {"X-Purge-All": "1"})]
        header = "xkey-softpurge" if self.soft else "xkey-purge"
        requests = [
            PurgeRequest("/", {header: value})
            for value in pack(purge_names(batch.names), self.separator, self.max_header_bytes)
        ]
        soft = {"X-Purge-Soft": "1"} if self.soft else {}
        requests += [
            PurgeRequest(path, {"Host": host, **soft})
            for host, path in url_targets(
                self.label, batch.urls, lambda: public_hosts(self.label, self._hosts, batch.host)
            )
        ]
        return requests


def _is_success(status: int) -> bool:
    return 200 <= status < 300
