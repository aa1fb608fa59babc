"""Reading entries and tokens the cheapest way the cache backend allows.

Every hit reads several keys (an entry and its tokens) where Django's own
tag reads one, so the per-key cost of the client decides how a hit compares.
:func:`get_many` and :func:`get` read through a *reader*, chosen once per
cache object (Django makes new ones when ``CACHES`` changes, and one per
thread) and kept on it. Each reader below says what it bypasses and why
that is safe; whether each one pays for itself is measured in
``benchmarks/README.md`` ("Client fast paths"). A new client shape is one
more reader class and one more case in :func:`_choose`.

Writes go through :mod:`cachesweeper.writes`; for a memcached pool it uses
:meth:`PymemcachePoolReader.store`, which owns the pool's sockets.

:class:`PlainReader` — the backend's own ``get_many`` / ``get``; bypasses
nothing. Every backend and client without a reader of its own, and every
cache object whose ``get`` or ``get_many`` is not the stock one gets it: a
subclass that overrides them, or a wrapper set on the object itself (the
debug toolbar's panels, a test's spy). Such wrappers are looked for on every
read, so one set after the first read is honoured too.

:class:`PymemcacheReader` — Django's ``PyMemcacheCache`` with one server.
Bypasses pymemcache's ``HashClient``, which even with a single server
validates each key twice and hashes it with a pure-Python MurmurHash3 to
pick that server: the read goes to that server's client directly. Safe
because with one server the hash can only pick that one, and the server's
client checks every key it sends. Only while the ring is healthy: with a
server ``HashClient`` has marked failing or dead, the read takes the
ordinary path, so its retry and dead-server logic decides; and a connection
error on the direct read is recorded with ``HashClient`` as it would have
been. A ring that ignores exceptions (``ignore_exc``) is read the ordinary
way.

:class:`PymemcachePoolReader` — Django's ``PyMemcacheCache`` with several
servers. ``HashClient`` asks them one after the other, so a hit whose entry
and token live on two servers waits two round trips, and a list spread over
three waits three. This reader writes every server's request before waiting
for any reply (:mod:`cachesweeper.pools`), so a read waits about one round
trip whatever the number of servers; its token writes do the same, and the
``add`` of several missing counters is pipelined into one round trip instead
of one per counter. Keys stay where ``PyMemcacheCache`` puts them: the ring's
own hasher picks each key's server, and each server's own client encodes
and parses. As for one server: only while the ring is healthy (else the
ordinary path, so ``HashClient``'s retry and dead-server logic decides which
servers are asked and a down server's keys miss while the others serve), a
connection error is recorded with ``HashClient``, and a ring that ignores
exceptions, pools its connections (``use_pooling``) or a backend class that
overrides ``get``, ``get_many``, ``set_many`` or ``add`` takes the ordinary path.

:class:`RedisCacheReader` — Django's own ``RedisCache`` with one server.
Bypasses the new ``redis.Redis`` client object Django builds for every
call: the reader keeps one, over the same connection pool (a client
object is thread-safe; its connections come from the pool). It sends
``MGET`` without redis-py's ``mget`` helper (see :func:`_mget`) and decodes
with the backend's serializer; the stock ``RedisSerializer`` tries
``int()`` first, which fails on every entry, so entries go straight to
``pickle.loads``, as they would after that failure. With replicas
(``LOCATION`` a list: the primary first), it reads the primary: see
*Replicas* below.

:class:`DjangoRedisReader` — a stock django-redis ``RedisCache`` with its
``DefaultClient`` or its ``SentinelClient`` (a ``DefaultClient`` whose
``LOCATION`` names a Sentinel service: the master's pool first, a replicas'
pool second; it changes nothing else). Bypasses three layers around each read: the backend's
exception wrapper, ``DefaultClient.get_many`` / ``get`` and redis-py's
``mget`` helper; the read goes through the client's own connection to the
primary (``get_client(write=True)``: see *Replicas* below), with its
key function, prefix and version, and its ``decode`` (so its serializer and
compressor apply; an entry skips the failing ``int()`` that ``decode``
tries first). Safe because the wrapper only turns errors into defaults when
``IGNORE_EXCEPTIONS`` is set, which takes the ordinary path; without it the
read raises what django-redis would have raised. Other clients (sharded,
herd) take the ordinary path.

:class:`ValkeyClusterReader` — django-valkey's stock ``ClusterValkeyCache`` with its
``DefaultClusterClient``: see the class.

Keys are made with the backend's ``make_key`` (prefix, version, key
function; with Django's default key function, by joining the prefix it
would put before every key). They are not run through Django's key
validation: the library's keys are hex digests, and the clients check
every key they send.

*Replicas.* Django's ``RedisCache`` and django-redis send reads to a replica
when ``LOCATION`` lists several servers, and so does django-redis with
Sentinel (its ``SentinelClient``, or ``is_master=0`` URLs: the replicas
Sentinel knows). A replica lags behind the primary
(by a few hundred microseconds, or for as long as replication is cut), so
after a committed sweep it may still hold the old token, next to the old
entry: a read there would serve content the sweep retired. Both readers
above therefore read entries and tokens from the primary, in one round trip
as before; the backend's other calls still use its replicas. With Sentinel,
"the primary" is the master Sentinel names, asked again after a failover by
redis-py's ``SentinelConnectionPool``. A replicated
cache whose reads do not go through those readers (``IGNORE_EXCEPTIONS``,
another django-redis client, a subclass) is read the ordinary way and can
be fooled by a lagging replica; keep ``VERSION_CACHE`` on such a cache
without replicas.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from django.core.cache import BaseCache
from django.core.cache.backends.base import default_key_func
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient, RedisSerializer

from cachesweeper import pools

try:
    from django_redis.cache import RedisCache as _DjangoRedisCache
    from django_redis.client import DefaultClient as _DefaultClient
    from django_redis.client import SentinelClient as _SentinelClient
    from django_redis.exceptions import CompressorError as _CompressorError
except ImportError:  # django-redis is optional
    _DjangoRedisCache = None
    _DefaultClient = None
    _SentinelClient = None
    _CompressorError = None

# The first byte of anything ``int()`` could parse (Django's RedisSerializer
# stores integers as their digits, everything else pickled).
_INTEGER_START = b"0123456789+- \t\n\r\x0b\x0c"

# The attribute of a cache object that keeps its reader.
_READER = "_cachesweeper_reader"


def get_many(cache: BaseCache, keys: list[str]) -> dict[str, Any]:
    """``cache.get_many(keys)``, in one round trip."""
    return reader(cache).get_many(cache, keys)


def get(cache: BaseCache, key: str) -> Any:
    """``cache.get(key)``; ``None`` when missing."""
    return reader(cache).get(cache, key)


def reader(cache: BaseCache) -> Reader:
    """The reader of ``cache``: chosen once and kept on it; :data:`PLAIN` while a
    ``get``/``get_many`` set on the object itself wraps its reads (asked on every read)."""
    attributes = cache.__dict__
    if "get_many" in attributes or "get" in attributes:
        return PLAIN
    chosen: Reader | None = attributes.get(_READER)
    if chosen is None:
        chosen = attributes[_READER] = _choose(cache)
    return chosen


class Reader:
    """How one cache object is read (and its tokens written); the cache is passed in, never kept.

    Writes default to the backend's own calls.
    """

    def get_many(self, cache: BaseCache, keys: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def get(self, cache: BaseCache, key: str) -> Any:
        raise NotImplementedError


class PlainReader(Reader):
    """The backend's own ``get_many`` / ``get``: bypasses nothing."""

    def get_many(self, cache: BaseCache, keys: list[str]) -> dict[str, Any]:
        return cache.get_many(keys)

    def get(self, cache: BaseCache, key: str) -> Any:
        return cache.get(key)


PLAIN = PlainReader()


def _choose(cache: BaseCache) -> Reader:
    """The reader of ``cache``: a fast path where one applies, else :data:`PLAIN`."""
    if isinstance(cache, PyMemcacheCache) and _stock_reads(cache, PyMemcacheCache):
        ring = cache._cache  # type: ignore[attr-defined]
        if isinstance(getattr(ring, "clients", None), dict) and not getattr(
            ring, "ignore_exc", True
        ):
            if len(ring.clients) == 1:
                return PymemcacheReader(cache, ring)
            if _poolable(cache, ring):
                return PymemcachePoolReader(cache, ring)
    if isinstance(cache, RedisCache) and _stock_reads(cache, RedisCache):
        client: Any = cache._cache
        if _stock_reads(client, RedisCacheClient):
            return RedisCacheReader(cache, client)
    if (
        _DjangoRedisCache is not None
        and isinstance(cache, _DjangoRedisCache)
        and _stock_reads(cache, _DjangoRedisCache)
        and not cache._ignore_exceptions
        and type(cache.client) in (_DefaultClient, _SentinelClient)
    ):
        return DjangoRedisReader(cache.client)
    cluster = _valkey_cluster(cache)
    if cluster is not None:
        return cluster
    return PLAIN


def _poolable(cache: BaseCache, ring: Any) -> bool:
    """Whether a several-server ``PyMemcacheCache`` can be read and written by its sockets.

    Stock writes too (the reader writes tokens), and a ring :mod:`cachesweeper.pools`
    can drive (a pooled client, say, has no socket of its own).
    """
    kind = type(cache)
    return (
        kind.set_many is PyMemcacheCache.set_many
        and kind.add is PyMemcacheCache.add
        and pools.usable(ring)
    )


def _stock_reads(target: object, stock: type) -> bool:
    """Whether ``target``'s class reads (``get``, ``get_many``) as ``stock`` does."""
    kind = type(target)
    return kind.get_many is stock.get_many and kind.get is stock.get  # type: ignore[attr-defined]


class KeyMaker:
    """``cache.make_key`` of keys; with Django's default key function, one prefix joined.

    A list of a hundred items reads a hundred and one keys.
    """

    def __init__(self, cache: BaseCache) -> None:
        self.joined = (
            type(cache).make_key is BaseCache.make_key and cache.key_func is default_key_func
        )

    def made(self, cache: BaseCache, keys: list[str]) -> list[str]:
        if not self.joined:
            return [cache.make_key(key) for key in keys]
        prefix = f"{cache.key_prefix}:{cache.version}:"  # what default_key_func puts before a key
        return [prefix + key for key in keys]


class PymemcacheReader(KeyMaker, Reader):
    """A single-server ``PyMemcacheCache``, read through that server's client while it is healthy.

    Bypasses ``HashClient`` (its key checks and its per-key server hashing).
    """

    def __init__(self, cache: BaseCache, ring: Any) -> None:
        super().__init__(cache)
        self.ring = ring

    def node(self) -> Any:
        """The client of the only server, if ``HashClient`` counts no failure against it."""
        ring = self.ring
        clients = ring.clients
        if len(clients) != 1 or ring._failed_clients or ring._dead_clients:
            return None
        # Looked up on every read: HashClient makes a new client for a server it revives.
        return next(iter(clients.values()))

    def get_many(self, cache: BaseCache, keys: list[str]) -> dict[str, Any]:
        node = self.node()
        if node is None:
            return cache.get_many(keys)
        made_keys = self.made(cache, keys)
        found = self.guarded(node, node.get_many, made_keys)
        pairs = zip(keys, made_keys, strict=True)
        return {key: found[made] for key, made in pairs if made in found}

    def get(self, cache: BaseCache, key: str) -> Any:
        node = self.node()
        if node is None:
            return cache.get(key)
        return self.guarded(node, node.get, cache.make_key(key))

    def guarded(self, node: Any, read: Any, argument: Any) -> Any:
        try:
            return read(argument)
        except OSError:
            # What HashClient does with a connection error: start counting the
            # server's failures, so its retry and dead-server logic applies.
            self.ring._mark_failed_server(node.server)
            raise


class PymemcachePoolReader(KeyMaker, Reader):
    """A several-server ``PyMemcacheCache``: every server asked before any reply is awaited.

    Bypasses ``HashClient``'s one-server-after-the-other calls while the ring
    is healthy; keeps its hashing, so keys live where ``PyMemcacheCache`` puts them.
    """

    def __init__(self, cache: BaseCache, ring: Any) -> None:
        super().__init__(cache)
        self.ring = ring
        self.placement = pools.Placement(ring)

    def healthy(self) -> bool:
        """No server failing or dead: the hasher holds them all, none is being retried."""
        ring = self.ring
        return not ring._failed_clients and not ring._dead_clients

    def get_many(self, cache: BaseCache, keys: list[str]) -> dict[str, Any]:
        if not self.healthy():
            return cache.get_many(keys)
        made_keys = self.made(cache, keys)
        found = pools.get_many(self.ring, self.placement.groups(made_keys))
        pairs = zip(keys, made_keys, strict=True)
        return {key: found[made] for key, made in pairs if made in found}

    def get(self, cache: BaseCache, key: str) -> Any:
        return cache.get(key)  # one key, one server: nothing to send at once

    def store(
        self, cache: BaseCache, name: bytes, values: Mapping[str, Any], timeout: float | None
    ) -> dict[str, bool] | None:
        """Whether each key was stored by ``name``; ``None`` when the ring is not healthy."""
        if not values or not self.healthy():
            return None
        keys = list(values)
        made_keys = self.made(cache, keys)
        original = dict(zip(made_keys, keys, strict=True))
        groups = self.placement.groups(made_keys)
        batches = {
            node: {made: values[original[made]] for made in batch}
            for node, batch in groups.items()
        }
        expire = int(
            cache.get_backend_timeout(timeout) or 0
        )  # memcached's: an int; 0 never expires
        stored = pools.store(self.ring, name, batches, expire)
        return {original[made]: done for made, done in stored.items()}


class RedisCacheReader(KeyMaker, Reader):
    """A Django ``RedisCache``, read through one kept ``redis.Redis`` of its primary.

    Bypasses the client object Django builds per call and redis-py's ``mget`` helper.
    """

    def __init__(self, cache: BaseCache, client: Any) -> None:
        super().__init__(cache)
        self.redis = client.get_client(write=True)  # the primary: replicas may lag a sweep
        self.serializer = client._serializer
        self.stock_serializer = type(self.serializer) is RedisSerializer

    def get_many(self, cache: BaseCache, keys: list[str]) -> dict[str, Any]:
        values = _mget(self.redis, self.made(cache, keys))
        return {
            key: self.loads(raw) for key, raw in zip(keys, values, strict=True) if raw is not None
        }

    def get(self, cache: BaseCache, key: str) -> Any:
        raw = self.redis.get(cache.make_key(key))
        return None if raw is None else self.loads(raw)

    def loads(self, raw: bytes) -> Any:
        """``serializer.loads(raw)``; a stock ``RedisSerializer`` skips its failing ``int()``.

        It stores integers as their digits and pickles everything else, and
        ``int()`` cannot parse what does not start like a number.
        """
        if self.stock_serializer and raw[:1] not in _INTEGER_START:
            return pickle.loads(raw)
        return self.serializer.loads(raw)


def _mget(redis: Any, keys: list[str]) -> list[bytes | None]:
    """``redis.mget(keys)``, without the helper around it, which costs on every call.

    The same command, and the ``keys`` that redis-py's client-side caching reads.
    """
    return redis.execute_command("MGET", *keys, keys=keys)  # type: ignore[no-any-return]


class DjangoRedisReader(Reader):
    """A stock django-redis with its ``DefaultClient``, read through that client's connection.

    Bypasses the backend's exception wrapper, ``DefaultClient.get_many`` and redis-py's
    ``mget`` helper.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    # Keys as DefaultClient.make_key makes them (its backend's key function, prefix and
    # version), without wrapping each in a CacheKey.

    def get_many(self, cache: BaseCache, keys: list[str]) -> dict[str, Any]:
        made_keys = [cache.key_func(key, cache.key_prefix, cache.version) for key in keys]
        values = _mget(self.client.get_client(write=True), made_keys)  # the primary
        return {
            key: self.decode(raw) for key, raw in zip(keys, values, strict=True) if raw is not None
        }

    def get(self, cache: BaseCache, key: str) -> Any:
        made = cache.key_func(key, cache.key_prefix, cache.version)
        raw = self.client.get_client(write=True).get(made)  # the primary
        return None if raw is None else self.decode(raw)

    def decode(self, raw: bytes) -> Any:
        """``client.decode(raw)``, without its ``int()`` on what cannot be an integer.

        ``DefaultClient.decode`` tries ``int()`` first, which fails on every entry;
        the rest is its own fallback: decompress when compressed, then deserialize.
        """
        client = self.client
        if raw[:1] in _INTEGER_START:
            return client.decode(raw)
        try:
            raw = client._compressor.decompress(raw)
        except _CompressorError:  # small values are stored uncompressed
            pass
        return client._serializer.loads(raw)


def _valkey_cluster(cache: BaseCache) -> Reader | None:
    """A :class:`ValkeyClusterReader` for django-valkey's stock cluster backend, else ``None``."""
    if not type(cache).__module__.startswith("django_valkey.cluster_cache"):
        return None
    # Imported here: django-valkey is optional, and reads settings on import.
    from django_valkey.cluster_cache.cache import ClusterValkeyCache
    from django_valkey.cluster_cache.client import DefaultClusterClient

    if (
        isinstance(cache, ClusterValkeyCache)
        and _stock_reads(cache, ClusterValkeyCache)
        and type(cache.client) is DefaultClusterClient
    ):
        return ValkeyClusterReader(cache.client)
    return None


class ValkeyClusterReader(Reader):
    """django-valkey's ``ClusterValkeyCache``, read from the masters in one cluster pipeline.

    An entry and its tokens hash to different slots, usually on different nodes. One
    ``MGET`` per slot, each sent to the slot's master: valkey-py writes a pipeline to
    every node before reading any answer, so the read waits about one round trip. The
    masters, because with ``read_from_replicas`` the backend's own ``get_many`` reads
    replicas, which may lag behind a sweep (see *Replicas* above). Keys are made as
    ``DefaultClusterClient.make_key`` makes them, values decoded by its ``decode``.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def get_many(self, cache: BaseCache, keys: list[str]) -> dict[str, Any]:
        made = [cache.key_func(key, cache.key_prefix, cache.version) for key in keys]
        cluster = self.client.get_client(write=True)
        slots: dict[int, list[int]] = {}
        for index, key in enumerate(made):
            slots.setdefault(cluster.keyslot(key), []).append(index)
        pipeline = cluster.pipeline()
        for indices in slots.values():
            master = cluster.get_node_from_key(made[indices[0]], replica=False)
            pipeline.execute_command("MGET", *[made[i] for i in indices], target_nodes=master)
        found: dict[str, Any] = {}
        for indices, values in zip(slots.values(), pipeline.execute(), strict=True):
            for index, raw in zip(indices, values, strict=True):
                if raw is not None:
                    found[keys[index]] = self.client.decode(raw)
        return found

    def get(self, cache: BaseCache, key: str) -> Any:
        made = cache.key_func(key, cache.key_prefix, cache.version)
        cluster = self.client.get_client(write=True)
        master = cluster.get_node_from_key(made, replica=False)
        raw = cluster.execute_command("GET", made, target_nodes=master)
        return None if raw is None else self.client.decode(raw)
