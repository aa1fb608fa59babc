"""Cache backends that record every cache API call, for deterministic round-trip counts.

The design promises "a hit costs one ``get_many``" and "a cached list of N items costs one
round trip". Timing cannot prove that; counting calls can. Each counting backend appends
the name of every *outermost* cache API call to ``cache.calls`` (``"get"``, ``"get_many"``,
``"set"``, ``"set_many"``, ``"add"``, ``"incr"``, ``"decr"``, ``"delete"``,
``"delete_many"``, ``"touch"``, ``"has_key"``, ``"clear"``, ``"get_or_set"``, ...), so::

    cache = caches["default"]
    cache.reset_calls()
    render_the_page()
    assert cache.calls == ["get_many"]

Outermost means calls a backend makes on itself are not counted again: LocMem inherits
``BaseCache.get_many``, which calls ``get`` once per key, and that is logged as the one
``"get_many"`` a real backend would make. The guard is a ``ContextVar``, so it also holds
across ``sync_to_async`` and is separate per thread and per asyncio task.

For these backends one logged call is one network round trip (per server), because
memcached and Redis implement each of these operations in one request, except:

* Django's own ``RedisCache.incr`` / ``decr`` send ``EXISTS`` then ``INCRBY``: two round
  trips (django-redis does both in one Lua ``EVAL``: one round trip);
* ``get_or_set`` is ``BaseCache``'s composite on every backend here: a ``get``, and on a
  miss an ``add`` and another ``get``; it is logged once, as ``"get_or_set"``;
* LocMem makes no round trips at all; its log stands for what memcached or Redis would do.

Async methods: the ones Django implements as one ``sync_to_async`` hop (``aget``, ``aset``,
``aadd``, ``adelete``, ``atouch``, ``aclear``) are logged under their own name.
``BaseCache``'s async composites (``aget_many``, ``aset_many``, ``adelete_many``,
``aget_or_set``, ``ahas_key``, ``aincr``, ``adecr``, ...) are really one ``aget`` / ``aset``
/ ... per key on every stock Django backend, so they are *not* logged themselves: the log
shows the per-key calls they make (``await cache.aget_many([a, b])`` logs ``["aget",
"aget"]``). That is the truth about their round trips, not a harness artefact. A backend
that implements such a method natively gets it logged as one call.

The log belongs to the storage, not to the Python object: Django makes one backend
instance per thread, and every instance with the same class, ``LOCATION`` and
``KEY_PREFIX`` appends to the same list, so calls made in worker threads are counted too
(``list.append`` is atomic; the order between threads is whatever happened).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Coroutine
from contextvars import ContextVar, Token
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache
from django.utils.functional import cached_property
from django_redis.cache import RedisCache as DjangoRedisCache

#: Sync cache API methods that are logged when called from outside the backend.
SYNC_METHODS = (
    "get",
    "get_many",
    "set",
    "set_many",
    "add",
    "incr",
    "decr",
    "delete",
    "delete_many",
    "touch",
    "has_key",
    "clear",
    "get_or_set",
    "incr_version",
    "decr_version",
)

#: Async methods that ``BaseCache`` implements as a single ``sync_to_async`` call.
ASYNC_SINGLE_METHODS = ("aget", "aset", "aadd", "adelete", "atouch", "aclear")

#: Async methods that ``BaseCache`` implements as several other async calls.
ASYNC_COMPOSITE_METHODS = (
    "aget_many",
    "aset_many",
    "adelete_many",
    "aget_or_set",
    "ahas_key",
    "aincr",
    "adecr",
    "aincr_version",
    "adecr_version",
)

# ids of the counting backend instances whose API call is in progress in this context.
_active: ContextVar[frozenset[int]] = ContextVar(
    "cachesweeper_counting_active", default=frozenset()
)

_logs: dict[tuple[str, str, str], list[str]] = {}
_logs_lock = threading.Lock()


def _shared_log(key: tuple[str, str, str]) -> list[str]:
    with _logs_lock:
        return _logs.setdefault(key, [])


class CountingCacheMixin:
    """Mix in before a Django cache backend class to log its outermost API calls."""

    calls: list[str]

    def __init__(self, location: Any, params: dict[str, Any]) -> None:
        super().__init__(location, params)  # type: ignore[call-arg]
        key_prefix = str(getattr(self, "key_prefix", ""))
        self.calls = _shared_log((type(self).__qualname__, repr(location), key_prefix))

    def reset_calls(self) -> None:
        """Empty the log (in place: other threads' instances share the list)."""
        self.calls.clear()

    def _record(self, name: str) -> Token[frozenset[int]] | None:
        """Log ``name`` unless this instance is already inside a call; return a reset token."""
        active = _active.get()
        if id(self) in active:
            return None
        self.calls.append(name)
        return _active.set(active | {id(self)})

    def _logged(self, name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, logged as ``name`` if it is an outermost call."""
        token = self._record(name)
        try:
            return call(*args, **kwargs)
        finally:
            if token is not None:
                _active.reset(token)


def _counted_sync(name: str) -> Callable[..., Any]:
    def method(self: CountingCacheMixin, *args: Any, **kwargs: Any) -> Any:
        return self._logged(name, getattr(super(CountingCacheMixin, self), name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


def _counted_async(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    base_impl = getattr(BaseCache, name)

    async def method(self: CountingCacheMixin, *args: Any, **kwargs: Any) -> Any:
        inner = getattr(super(CountingCacheMixin, self), name)
        if name in ASYNC_COMPOSITE_METHODS and inner.__func__ is base_impl:
            # BaseCache's loop over per-key async calls: let those be logged instead.
            return await inner(*args, **kwargs)
        token = self._record(name)
        try:
            return await inner(*args, **kwargs)
        finally:
            if token is not None:
                _active.reset(token)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = base_impl.__doc__
    return method


for _name in SYNC_METHODS:
    setattr(CountingCacheMixin, _name, _counted_sync(_name))
for _name in ASYNC_SINGLE_METHODS + ASYNC_COMPOSITE_METHODS:
    setattr(CountingCacheMixin, _name, _counted_async(_name))
del _name


class CountingLocMemCache(CountingCacheMixin, LocMemCache):
    """LocMem (per process, no server) with a call log."""


class CountingPyMemcacheCache(CountingCacheMixin, PyMemcacheCache):
    """Django's memcached backend (pymemcache) with a call log.

    ``get`` and ``get_many`` are logged where the request leaves for the
    server, at pymemcache's per-server client: cachesweeper reads a single
    server's client directly (``cachesweeper.reads``), and those reads are
    round trips too. The backend's own ``get``/``get_many`` stay Django's, so
    that direct path is the one under test.
    """

    get = PyMemcacheCache.get
    get_many = PyMemcacheCache.get_many

    @cached_property
    def _cache(self) -> Any:
        ring = super()._cache
        for client in ring.clients.values():
            for name in ("get", "get_many"):
                read = functools.partial(self._logged, name, getattr(client, name))
                setattr(client, name, read)
        return ring


class CountingDjangoRedisCache(CountingCacheMixin, DjangoRedisCache):  # type: ignore[misc]
    """django-redis' ``RedisCache`` with a call log."""


class CountingRedisCache(CountingCacheMixin, RedisCache):
    """Django's own ``RedisCache`` (Django 4.0+) with a call log.

    As for memcached, ``get`` and ``get_many`` are logged at the redis-py
    client, where cachesweeper's direct reads go too: by the command sent
    (``GET``, ``MGET``), whichever of redis-py's methods sent it.
    """

    get = RedisCache.get
    get_many = RedisCache.get_many

    @cached_property
    def _cache(self) -> Any:
        client = super()._cache
        make_client = client.get_client

        def get_client(*args: Any, **kwargs: Any) -> Any:
            redis = make_client(*args, **kwargs)
            redis.execute_command = functools.partial(self._command, redis.execute_command)
            return redis

        client.get_client = get_client
        return client

    def _command(self, execute: Callable[..., Any], *args: Any, **options: Any) -> Any:
        name = _REDIS_COMMANDS.get(args[0], str(args[0]).lower())
        return self._logged(name, execute, *args, **options)


# Redis commands logged under the cache API call that sends them.
_REDIS_COMMANDS = {"GET": "get", "MGET": "get_many"}


def counting(alias: str = "default") -> CountingCacheMixin:
    """``caches[alias]`` as a counting backend; fails clearly if it is some other backend."""
    cache = caches[alias]
    if not isinstance(cache, CountingCacheMixin):
        raise TypeError(f"caches[{alias!r}] is {type(cache).__name__}, not a counting backend")
    return cache


def calls_of(alias: str = "default") -> list[str]:
    """The call log of ``caches[alias]`` (shared by all threads' instances of it)."""
    return counting(alias).calls


def reset_calls(alias: str = "default") -> None:
    """Empty the call log of ``caches[alias]``."""
    counting(alias).reset_calls()
