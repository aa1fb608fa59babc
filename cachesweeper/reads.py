"""Reading entries and tokens the cheapest way the cache backend allows.

Every hit reads several keys (an entry and its tokens) where Django's own
tag reads one, so the per-key cost of the client decides how a hit compares.
Django's ``PyMemcacheCache`` always talks through pymemcache's ``HashClient``,
which, even with a single server, validates each key twice and hashes it with
a pure-Python MurmurHash3 to pick that server: about 10 µs per key, more than
a loopback round trip. With one healthy server, the read goes to that
server's client directly; everything else (several servers, a server
``HashClient`` has marked failing or dead, ``ignore_exc``, other backends)
takes the ordinary path, and a connection error is recorded with
``HashClient`` as it would have been. So does a subclass that overrides
``get`` or ``get_many``: what it adds is kept.

Keys are made with the backend's ``make_key`` (prefix, version, key
function). They are not run through Django's memcached key validation: the
library's keys are hex digests, and pymemcache checks every key it sends.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import BaseCache
from django.core.cache.backends.memcached import PyMemcacheCache


def get_many(cache: BaseCache, keys: list[str]) -> dict[str, Any]:
    """``cache.get_many(keys)``, in one round trip."""
    node = _single_server(cache)
    if node is None:
        return cache.get_many(keys)
    made = {cache.make_key(key): key for key in keys}
    found = _guarded(cache, node, node.get_many, list(made))
    return {made[key]: value for key, value in found.items()}


def get(cache: BaseCache, key: str) -> Any:
    """``cache.get(key)``; ``None`` when missing."""
    node = _single_server(cache)
    if node is None:
        return cache.get(key)
    return _guarded(cache, node, node.get, cache.make_key(key))


def _single_server(cache: BaseCache) -> Any:
    """The client of the only server behind a ``PyMemcacheCache``, if it is healthy."""
    if (
        not isinstance(cache, PyMemcacheCache)
        or type(cache).get_many is not PyMemcacheCache.get_many
        or type(cache).get is not PyMemcacheCache.get
    ):
        return None
    ring = cache._cache  # type: ignore[attr-defined]
    clients = getattr(ring, "clients", None)
    if (
        not isinstance(clients, dict)
        or len(clients) != 1
        or getattr(ring, "ignore_exc", True)
        or getattr(ring, "_failed_clients", True)
        or getattr(ring, "_dead_clients", True)
    ):
        return None
    return next(iter(clients.values()))


def _guarded(cache: BaseCache, node: Any, read: Any, argument: Any) -> Any:
    try:
        return read(argument)
    except OSError:
        # What HashClient does with a connection error: start counting the
        # server's failures, so its retry and dead-server logic applies.
        cache._cache._mark_failed_server(node.server)  # type: ignore[attr-defined]
        raise
