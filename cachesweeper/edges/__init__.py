"""Edge caches in front of Django: tag headers on responses, purges on sweeps.

Backends (``CACHESWEEPER["EDGES"]``): ``cachesweeper.edges.LiteSpeed``,
``.Varnish``, ``.Squid``, ``.Fastly``, ``.Cloudflare``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from cachesweeper.edges.base import CachePolicy, Edge, PurgeBatch
from cachesweeper.edges.decorators import edge_cache, lscache, lscache_purge

_BACKENDS = {
    "LiteSpeed": "litespeed",
    "Varnish": "varnish",
    "Squid": "squid",
    "Fastly": "fastly",
    "Cloudflare": "cloudflare",
}


def __getattr__(name: str) -> Any:
    """Backends load on first use, so a project pays only for the edges it configures."""
    if name in _BACKENDS:
        return getattr(import_module(f"cachesweeper.edges.{_BACKENDS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CachePolicy",
    "Edge",
    "PurgeBatch",
    "edge_cache",
    "lscache",
    "lscache_purge",
]
