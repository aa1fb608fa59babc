"""Reading entries and tokens the cheapest way the cache backend allows.

Every hit reads several keys (an entry and its tokens) where Django's own
tag reads one, so the per-key cost of the client decides how a hit compares.
Django's ``PyMemcacheCache`` always talks through pymemcache's ``HashClient``,
which, even with a single server, validates each key twice and hashes it with
a pure-Python MurmurHash3 to pick that server, which per key can cost more
than a loopback round trip (figures in ``benchmarks/README.md``). With one
healthy server, the read goes to that server's client directly; everything
else (several servers, a server ``HashClient`` has marked failing or dead,
``ignore_exc``, other backends) takes the ordinary path, and a connection error is recorded with
``HashClient`` as it would have been. So does a subclass that overrides
``get`` or ``get_many``: what it adds is kept.

Django's own ``RedisCache`` builds a new ``redis.Redis`` client object for
every call; with one server, the read uses one client object
per backend instead, over the same connection pool (sending ``MGET``
without redis-py's ``mget`` helper, as for django-redis below), and the
backend's serializer. The stock ``RedisSerializer`` tries ``int()`` first,
which fails on every entry; entries go straight to ``pickle.loads``, as
they would after that failure.

django-redis wraps each read in three layers (the backend's error handling,
its client's ``get_many``, redis-py's ``mget`` helper), a visible share of a
small read at loopback, on top of the ``MGET`` itself. A stock ``RedisCache`` with its
``DefaultClient``, which does not ignore exceptions, is read through that
client's own redis connection, ``make_key`` and decoding (so its
serializer and compressor apply; an entry skips the failing ``int()`` that
``decode`` tries first) and raises what it would have raised;
``IGNORE_EXCEPTIONS``, other clients (sharded, herd) and subclasses that
override reads take the ordinary path.

Keys are made with the backend's ``make_key`` (prefix, version, key
function; with Django's default key function, by joining the prefix it
would put before every key). They are not run through Django's key
validation: the library's keys are hex digests, and the clients check
every key they send.
"""

from __future__ import annotations

import pickle
import weakref
from typing import Any

from django.core.cache import BaseCache
from django.core.cache.backends.base import default_key_func
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient, RedisSerializer

try:
    from django_redis.cache import RedisCache as _DjangoRedisCache
    from django_redis.client import DefaultClient as _DefaultClient
    from django_redis.exceptions import CompressorError as _CompressorError
except ImportError:  # django-redis is optional
    _DjangoRedisCache = None
    _DefaultClient = None
    _CompressorError = None

# The first byte of anything ``int()`` could parse (Django's RedisSerializer
# and django-redis store integers as their digits, everything else serialized).
_INTEGER_START = b"0123456789+- \t\n\r\x0b\x0c"


def get_many(cache: BaseCache, keys: list[str]) -> dict[str, Any]:
    """``cache.get_many(keys)``, in one round trip."""
    node = _single_server(cache)
    if node is not None:
        made_keys = _made_keys(cache, keys)
        found = _guarded(cache, node, node.get_many, made_keys)
        pairs = zip(keys, made_keys, strict=True)
        return {key: found[made] for key, made in pairs if made in found}
    redis = _redis_client(cache)
    if redis is not None:
        made_keys = _made_keys(cache, keys)
        serializer = cache._cache._serializer  # type: ignore[attr-defined]
        values = _mget(redis, made_keys)
        return {
            key: _redis_loads(serializer, raw)
            for key, raw in zip(keys, values, strict=True)
            if raw is not None
        }
    client = _django_redis_client(cache)
    if client is not None:
        made_keys = [_django_redis_key(cache, key) for key in keys]
        values = _mget(client.get_client(write=False), made_keys)
        return {
            key: _decode(client, raw)
            for key, raw in zip(keys, values, strict=True)
            if raw is not None
        }
    return cache.get_many(keys)


def get(cache: BaseCache, key: str) -> Any:
    """``cache.get(key)``; ``None`` when missing."""
    node = _single_server(cache)
    if node is not None:
        return _guarded(cache, node, node.get, cache.make_key(key))
    redis = _redis_client(cache)
    if redis is not None:
        raw = redis.get(cache.make_key(key))
        serializer = cache._cache._serializer  # type: ignore[attr-defined]
        return None if raw is None else _redis_loads(serializer, raw)
    client = _django_redis_client(cache)
    if client is not None:
        raw = client.get_client(write=False).get(_django_redis_key(cache, key))
        return None if raw is None else _decode(client, raw)
    return cache.get(key)


def _made_keys(cache: BaseCache, keys: list[str]) -> list[str]:
    """``cache.make_key`` of every key; with Django's default key function, one prefix joined.

    A list of a hundred items reads a hundred and one keys.
    """
    if type(cache).make_key is not BaseCache.make_key or cache.key_func is not default_key_func:
        return [cache.make_key(key) for key in keys]
    prefix = f"{cache.key_prefix}:{cache.version}:"  # what default_key_func puts before a key
    return [prefix + key for key in keys]


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


# One redis.Redis per RedisCacheClient (backends are per thread; the client
# object is thread-safe anyway, its connections come from the pool).
_redis_clients: weakref.WeakKeyDictionary[RedisCacheClient, Any] = weakref.WeakKeyDictionary()


def _redis_client(cache: BaseCache) -> Any:
    """A reusable client for a single-server ``RedisCache`` that reads the stock way."""
    if (
        not isinstance(cache, RedisCache)
        or type(cache).get_many is not RedisCache.get_many
        or type(cache).get is not RedisCache.get
    ):
        return None
    client: Any = cache._cache
    if (
        type(client).get_many is not RedisCacheClient.get_many
        or type(client).get is not RedisCacheClient.get
        or len(client._servers) != 1
    ):
        return None
    redis = _redis_clients.get(client)
    if redis is None:
        redis = _redis_clients[client] = client.get_client()
    return redis


def _mget(redis: Any, keys: list[str]) -> list[bytes | None]:
    """``redis.mget(keys)``, without the helper around it, which costs on every call.

    The same command, and the ``keys`` that redis-py's client-side caching reads.
    """
    return redis.execute_command("MGET", *keys, keys=keys)  # type: ignore[no-any-return]


def _redis_loads(serializer: Any, raw: bytes) -> Any:
    """``serializer.loads(raw)``; a stock ``RedisSerializer`` skips its failing ``int()``.

    It stores integers as their digits and pickles everything else, and
    ``int()`` cannot parse what does not start like a number.
    """
    if type(serializer) is RedisSerializer and raw[:1] not in _INTEGER_START:
        return pickle.loads(raw)
    return serializer.loads(raw)


def _django_redis_client(cache: BaseCache) -> Any:
    """The ``DefaultClient`` of a stock django-redis cache that lets errors through."""
    if _DjangoRedisCache is None or not isinstance(cache, _DjangoRedisCache):
        return None
    if (
        type(cache).get_many is not _DjangoRedisCache.get_many
        or type(cache).get is not _DjangoRedisCache.get
        or cache._ignore_exceptions
    ):
        return None
    client = cache.client
    return client if type(client) is _DefaultClient else None


def _django_redis_key(cache: BaseCache, key: str) -> str:
    """``DefaultClient.make_key(key)``: the key function it calls, without a ``CacheKey``."""
    made: str = cache.key_func(key, cache.key_prefix, cache.version)
    return made


def _decode(client: Any, raw: bytes) -> Any:
    """``client.decode(raw)``, without its ``int()`` on what cannot be an integer.

    ``DefaultClient.decode`` tries ``int()`` first; on an entry that fails,
    and raising that exception is paid on every hit. The rest is its own
    fallback: decompress when compressed, then deserialize.
    """
    if raw[:1] in _INTEGER_START:
        return client.decode(raw)
    try:
        raw = client._compressor.decompress(raw)
    except _CompressorError:  # small values are stored uncompressed
        pass
    return client._serializer.loads(raw)
