"""A pymemcache hasher for a single memcached server.

Django's ``PyMemcacheCache`` always talks through pymemcache's ``HashClient``, which
picks the server of every key with rendezvous hashing over a pure-Python MurmurHash3:
several microseconds per key even when there is one server to choose from. With one
server this hasher skips that work::

    CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "127.0.0.1:11211",
        "OPTIONS": {"hasher": SingleServerHasher},
    }}

The benchmarks run the ``memcached_single_hasher`` kind with it, for cachesweeper and
Django alike, to show how much of a memcached hit is the client's per-key cost.
"""

from __future__ import annotations

from typing import Any


class SingleServerHasher:
    """``HashClient``'s hasher interface (``add_node``, ``remove_node``, ``get_node``)."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []

    def add_node(self, node: Any) -> None:
        if node not in self.nodes:
            self.nodes.append(node)

    def remove_node(self, node: Any) -> None:
        self.nodes.remove(node)

    def get_node(self, key: str) -> Any:
        if len(self.nodes) > 1:
            raise RuntimeError("SingleServerHasher is for one memcached server only")
        return self.nodes[0] if self.nodes else None
