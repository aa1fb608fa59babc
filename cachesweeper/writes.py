"""Writing many keys at once: ``set_many`` and ``add_many`` that mean the same everywhere.

Entries (:func:`cachesweeper.entries.save`), sweeps
(:func:`cachesweeper.tokens.bump`) and new counters
(:func:`cachesweeper.tokens.create_counters`) store several keys in one call
and need two things of it: one round trip, and which keys were stored. Django's
backends return that list; django-redis and django-valkey return ``None``
(everything is stored or the call raises). :func:`set_many` gives the list on
every backend, through a *writer* chosen once per cache object, as
:mod:`cachesweeper.reads` chooses readers.

:class:`PlainWriter` — the backend's own ``set_many``. What it returns is read
as "keys not stored" only where it names keys that were given, so a backend
that answers something else (a list of ``True``) is never taken for a failure.
Its ``add_many`` is one ``add`` per key (Django has no ``add_many``).

:class:`PoolWriter` — Django's ``PyMemcacheCache`` with several servers:
writes to every server before waiting for any, through the pool's reader
(:class:`cachesweeper.reads.PymemcachePoolReader`, which owns the sockets and
the ring's health; see :mod:`cachesweeper.pools`).

:class:`ValkeyClusterWriter` — django-valkey's ``ClusterValkeyCache`` with its
``DefaultClusterClient``. That client's ``set_many`` is ``mset_nonatomic``
(django-valkey 0.4): it takes no ``timeout`` (``set_many(values, timeout=None)``
raises ``TypeError``, so every sweep failed), takes a positional timeout as the
*version* (so entries were stored under keys nobody reads), stores without
expiry, and answers one ``True`` per slot. The writer sends one ``SET`` per key,
with the expiry asked for, in one cluster pipeline: valkey-py groups a
pipeline's commands by node and writes to every node before reading any
answer, so the write waits about one round trip however many nodes it spans.
Keys (prefix, version, key function) and values (serializer, compressor) are
made by the backend's client. It is worked around here, at our one call site,
rather than by patching django-valkey: a patch would change the backend for
the rest of the project too, and would break silently when django-valkey fixes
or renames ``mset_nonatomic``; a cache whose client or ``set_many`` is not the
stock one keeps its own (:class:`PlainWriter`).
"""

from __future__ import annotations

from typing import Any

from django.core.cache import BaseCache

from cachesweeper import reads

# The attribute of a cache object that keeps its writer.
_WRITER = "_cachesweeper_writer"


def set_many(cache: BaseCache, values: dict[str, Any], timeout: float | None) -> list[str]:
    """``cache.set_many(values, timeout)`` in one round trip; the keys not stored.

    ``timeout`` in seconds, ``None`` for no expiry (as Django's).
    """
    if not values:
        return []
    return writer(cache).set_many(cache, values, timeout)


def add_many(cache: BaseCache, values: dict[str, Any], timeout: float | None) -> list[str]:
    """``cache.add`` of every item, in one round trip where the client allows: the keys
    stored (the others existed already)."""
    if not values:
        return []
    return writer(cache).add_many(cache, values, timeout)


def writer(cache: BaseCache) -> Writer:
    """The writer of ``cache``, chosen once and kept on it; :data:`PLAIN` while a
    ``set_many`` or ``add`` set on the object itself wraps its writes (asked on every
    write)."""
    attributes = cache.__dict__
    if "set_many" in attributes or "add" in attributes:
        return PLAIN
    chosen: Writer | None = attributes.get(_WRITER)
    if chosen is None:
        chosen = attributes[_WRITER] = _choose(cache)
    return chosen


class Writer:
    """How one cache object is written; the cache is passed in, never kept."""

    def set_many(
        self, cache: BaseCache, values: dict[str, Any], timeout: float | None
    ) -> list[str]:
        raise NotImplementedError

    def add_many(
        self, cache: BaseCache, values: dict[str, Any], timeout: float | None
    ) -> list[str]:
        return [key for key, value in values.items() if cache.add(key, value, timeout=timeout)]


class PlainWriter(Writer):
    """The backend's own ``set_many``; its answer read as the keys it did not store."""

    def set_many(
        self, cache: BaseCache, values: dict[str, Any], timeout: float | None
    ) -> list[str]:
        answer: Any = cache.set_many(values, timeout)  # None from django-redis, django-valkey
        if not isinstance(answer, list):
            return []  # django-redis, django-valkey: stored, or it raised
        return [key for key in answer if isinstance(key, str) and key in values]


PLAIN = PlainWriter()


class PoolWriter(Writer):
    """A memcached pool: every server is sent its keys before any answer is awaited."""

    def __init__(self, pool: reads.PymemcachePoolReader) -> None:
        self.pool = pool

    def set_many(
        self, cache: BaseCache, values: dict[str, Any], timeout: float | None
    ) -> list[str]:
        stored = self.pool.store(cache, b"set", values, timeout)
        if stored is None:  # the ring is not healthy: HashClient decides, server by server
            return PLAIN.set_many(cache, values, timeout)
        return [key for key, done in stored.items() if not done]

    def add_many(
        self, cache: BaseCache, values: dict[str, Any], timeout: float | None
    ) -> list[str]:
        stored = self.pool.store(cache, b"add", values, timeout)
        if stored is None:
            return PLAIN.add_many(cache, values, timeout)
        return [key for key, done in stored.items() if done]


def _choose(cache: BaseCache) -> Writer:
    """The writer of ``cache``: django-valkey's stock cluster backend and memcached pools
    have their own."""
    if type(cache).__module__.startswith("django_valkey.cluster_cache"):
        # Imported here: django-valkey is optional, and reads settings on import.
        from django_valkey.cluster_cache.cache import ClusterValkeyCache
        from django_valkey.cluster_cache.client import DefaultClusterClient

        if (
            isinstance(cache, ClusterValkeyCache)
            and type(cache).set_many is ClusterValkeyCache.set_many
            and type(cache.client) is DefaultClusterClient
        ):
            return ValkeyClusterWriter()
    found = reads.reader(cache)
    if isinstance(found, reads.PymemcachePoolReader):
        return PoolWriter(found)
    return PLAIN


class ValkeyClusterWriter(Writer):
    """django-valkey's stock cluster backend: one ``SET`` per key, with its expiry, pipelined."""

    def set_many(
        self, cache: BaseCache, values: dict[str, Any], timeout: float | None
    ) -> list[str]:
        client: Any = cache.client  # type: ignore[attr-defined]
        keys = [client.make_key(key) for key in values]
        milliseconds = None if timeout is None else int(timeout * 1000)
        cluster = client.get_client(write=True)
        if milliseconds is not None and milliseconds <= 0:
            # Django's meaning of a timeout of 0 or less: expired at once, so not kept.
            cluster.delete(*keys)
            return []
        pipeline = cluster.pipeline()
        for key, value in zip(keys, values.values(), strict=True):
            pipeline.set(key, client.encode(value), px=milliseconds)
        answers = pipeline.execute()
        return [key for key, stored in zip(values, answers, strict=True) if not stored]
