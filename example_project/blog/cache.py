"""Django's cache backends, counting the calls each request makes (for the footer).

Each class below is Django's own backend plus one thing: while a request is being
counted (``count_round_trips()``, entered by the footer layer in ``blog/showcase.py``),
every call to the cache - ``get_many``, ``set_many``, ``add``, ... - adds one to that
request's tally. Only the outermost call counts: LocMem's ``get_many`` calls ``get``
once per key internally, and that is still one call. On memcached and Redis, one such
call is one network round trip, which is what cachesweeper economises on: a cached
fragment, however deeply nested, is read with a single ``get_many``.

``settings.cache_from_url`` picks the class matching ``CACHESWEEPER_CACHE``. A real
project uses Django's backends directly; nothing here is needed by cachesweeper.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache

# The public methods of Django's BaseCache that talk to the cache.
_METHODS = (
    "add", "get", "set", "touch", "delete", "get_many", "get_or_set", "has_key",
    "incr", "decr", "set_many", "delete_many", "clear", "incr_version", "decr_version",
)  # fmt: skip

_tally: ContextVar[Counter[str] | None] = ContextVar("blog_round_trips", default=None)
_inside: ContextVar[bool] = ContextVar("blog_inside_cache_call", default=False)


@contextmanager
def count_round_trips() -> Iterator[Counter[str]]:
    """Count this context's cache calls by method name; yields the live Counter."""
    tally: Counter[str] = Counter()
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)


def _counted(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = getattr(super(RoundTripCounter, self), name)
        tally = _tally.get()
        if tally is None or _inside.get():
            return call(*args, **kwargs)
        tally[name] += 1
        token = _inside.set(True)  # calls this one makes internally are not counted
        try:
            return call(*args, **kwargs)
        finally:
            _inside.reset(token)

    method.__name__ = name
    return method


class RoundTripCounter:
    """Mixin: put it before a Django cache backend class."""


for _name in _METHODS:
    setattr(RoundTripCounter, _name, _counted(_name))


class CountingLocMemCache(RoundTripCounter, LocMemCache):
    pass


class CountingPyMemcacheCache(RoundTripCounter, PyMemcacheCache):
    pass


class CountingRedisCache(RoundTripCounter, RedisCache):
    pass
