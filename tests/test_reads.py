"""Direct reads of a single cache server (``cachesweeper.reads``).

Same answers as the backend's own ``get``/``get_many``: on memcached without
pymemcache's per-key server hashing, on Django's RedisCache without a new
client object per call, on django-redis without its wrappers. With a
failing server, a backend that overrides its reads or a django-redis that
ignores exceptions, the backend's own path is taken. Several memcached
servers get the pool reader: ``tests/test_pool.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.client import DefaultClient

from cachesweeper import reads
from tests.helpers import Counter, render
from tests.servers import MemcachedServer, RedisServer, cache_settings, free_port
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)


class Hashing:
    """Counts how often pymemcache picks a server for a key."""

    def __init__(self, cache: Any) -> None:
        self.ring = cache._cache
        self.calls = 0
        self.original = self.ring.hasher.get_node

    def __enter__(self) -> Hashing:
        def get_node(key: str) -> Any:
            self.calls += 1
            return self.original(key)

        self.ring.hasher.get_node = get_node
        return self

    def __exit__(self, *exc: object) -> None:
        self.ring.hasher.get_node = self.original


@pytest.fixture
def stock(memcached_server: MemcachedServer) -> Iterator[PyMemcacheCache]:
    """Django's own PyMemcacheCache on the test server, with a prefix and a version."""
    entry = cache_settings("memcached", memcached_server.location, counting=False)
    entry.update(KEY_PREFIX="site", VERSION=3)
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        assert type(cache) is PyMemcacheCache
        cache.clear()
        yield cache


def test_a_single_server_is_read_without_hashing_keys(stock: PyMemcacheCache) -> None:
    stock.set_many({"a": 1, "b": "two"})
    with Hashing(stock) as hashing:
        assert reads.get_many(stock, ["a", "b", "missing"]) == {"a": 1, "b": "two"}
        assert reads.get(stock, "b") == "two"
        assert reads.get(stock, "missing") is None
    assert hashing.calls == 0


def test_the_answers_are_django_s_own(stock: PyMemcacheCache) -> None:
    """Prefix and version apply: what Django stored is what the direct read finds."""
    stock.set("entry", ("payload", 1))
    stock.set("entry", "other version", version=4)

    assert (
        reads.get_many(stock, ["entry"]) == stock.get_many(["entry"]) == {"entry": ("payload", 1)}
    )
    assert reads.get(stock, "entry") == stock.get("entry") == ("payload", 1)


def reversed_key(key: str, key_prefix: str, version: int) -> str:
    """A ``KEY_FUNCTION`` of the user's own."""
    return f"{version}-{key_prefix}-{key[::-1]}"


class MarkedKeys(PyMemcacheCache):
    """A backend of the user's own that makes keys its own way (and reads as Django does)."""

    def make_key(self, key: str, version: int | None = None) -> str:
        return "marked-" + super().make_key(key, version)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("memcached", {"KEY_FUNCTION": "tests.test_reads.reversed_key"}),
        ("redis", {"KEY_FUNCTION": "tests.test_reads.reversed_key"}),
        ("memcached", {"BACKEND": "tests.test_reads.MarkedKeys"}),
    ],
    ids=["memcached-key-function", "redis-key-function", "memcached-make-key"],
)
def test_keys_are_made_as_the_backend_makes_them(
    memcached_server: MemcachedServer, redis_server: RedisServer, kind: str, extra: dict[str, str]
) -> None:
    location = memcached_server.location if kind == "memcached" else redis_server.url
    entry = cache_settings(kind, location, counting=False)
    entry.update(KEY_PREFIX="site", VERSION=3, **extra)
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        cache.set_many({"a": 1, "b": ("two", 2)})
        expected = {"a": 1, "b": ("two", 2)}
        assert cache.get_many(["a", "b", "missing"]) == expected
        assert reads.get_many(cache, ["a", "b", "missing"]) == expected
        assert reads.get(cache, "b") == ("two", 2)


FRAGMENT = (
    '{% cachesweeper article 60 "r" %}{{ article.title }} {{ counter.next }}{% endcachesweeper %}'
)


def test_a_fragment_hit_reads_the_server_directly(stock: PyMemcacheCache) -> None:
    article = Article.objects.create(title="t")
    counter = Counter()
    assert render(FRAGMENT, article=article, counter=counter) == "t 1"
    with Hashing(stock) as hashing:
        assert render(FRAGMENT, article=article, counter=counter) == "t 1"
    assert hashing.calls == 0


def test_several_servers_go_through_the_hash_ring(memcached_server: MemcachedServer) -> None:
    port = memcached_server.location.rsplit(":", 1)[1]
    entry = cache_settings("memcached", memcached_server.location, counting=False)
    entry["LOCATION"] = [f"127.0.0.1:{port}", f"localhost:{port}"]  # one server, two names
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        cache.set_many({"a": 1, "b": 2})
        with Hashing(cache) as hashing:
            assert reads.get_many(cache, ["a", "b"]) == {"a": 1, "b": 2}
        assert hashing.calls == 2


def test_a_connection_error_is_counted_by_the_hash_ring() -> None:
    """Then HashClient's retry and dead-server handling decide, as without the direct path."""
    entry = cache_settings("memcached", f"127.0.0.1:{free_port()}", counting=False)
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        with pytest.raises(OSError):
            reads.get_many(cache, ["a"])
        ring = cache._cache  # type: ignore[attr-defined]
        assert list(ring._failed_clients) == [next(iter(ring.clients.values())).server]
        with Hashing(cache) as hashing:
            # The ring now decides: within its retry_timeout it answers "nothing".
            assert reads.get_many(cache, ["a"]) == {}
        assert hashing.calls == 1


class Audited(PyMemcacheCache):
    """A project's subclass that adds to ``get_many``."""

    audited: list[list[str]] = []

    def get_many(self, keys: Any, version: int | None = None) -> dict[str, Any]:
        self.audited.append(list(keys))
        return super().get_many(keys, version=version)


def test_a_subclass_that_overrides_reads_is_respected(memcached_server: MemcachedServer) -> None:
    entry = cache_settings("memcached", memcached_server.location, counting=False)
    entry["BACKEND"] = f"{__name__}.Audited"
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        cache.set("a", 1)
        Audited.audited.clear()
        assert reads.get_many(cache, ["a"]) == {"a": 1}
    assert Audited.audited == [["a"]]


# -- Django's RedisCache: one client object per backend, not one per call -------------


class ClientsMade:
    """Counts the redis-py client objects a RedisCache makes."""

    def __init__(self, cache: Any) -> None:
        self.client = cache._cache
        self.made = 0
        self.original = self.client.get_client

    def __enter__(self) -> ClientsMade:
        def get_client(*args: Any, **kwargs: Any) -> Any:
            self.made += 1
            return self.original(*args, **kwargs)

        self.client.get_client = get_client
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.get_client = self.original


def redis_entry(redis_server: RedisServer, **extra: Any) -> dict[str, Any]:
    entry = cache_settings("redis", redis_server.url, counting=False)
    entry.update(extra)
    return entry


def test_django_redis_cache_reads_reuse_one_client(redis_server: RedisServer) -> None:
    with override_settings(CACHES={"default": redis_entry(redis_server, KEY_PREFIX="site")}):
        cache = caches["default"]
        assert type(cache) is RedisCache
        cache.clear()
        cache.set_many({"a": 1, "b": ("two", 2)})
        cache.set("a", "other version", version=2)
        with ClientsMade(cache) as clients:
            for _ in range(5):
                assert reads.get_many(cache, ["a", "b", "missing"]) == {"a": 1, "b": ("two", 2)}
                assert reads.get(cache, "b") == ("two", 2)
                assert reads.get(cache, "missing") is None
        assert clients.made <= 1
        assert cache.get_many(["a", "b"]) == {"a": 1, "b": ("two", 2)}


def test_django_redis_cache_with_replicas_reads_the_primary_through_one_client(
    redis_server: RedisServer,
) -> None:
    """A replica may lag a sweep (tests/test_replicas.py): entries and tokens come from the
    primary, the first server of ``LOCATION``."""
    entry = redis_entry(redis_server)
    entry["LOCATION"] = [redis_server.url, "redis://127.0.0.1:9/0"]  # no replica answers
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        cache.set("a", 1)
        with ClientsMade(cache) as clients:
            for _ in range(3):
                assert reads.get_many(cache, ["a"]) == {"a": 1}
                assert reads.get(cache, "a") == 1
        assert clients.made <= 1


# Integers Django's RedisCache and django-redis store as digits, and values
# whose serialized form may or may not start like one (a float in JSON does;
# digits in a string do not).
VALUES = {
    "int": 12345678901234,
    "negative": -7,
    "zero": 0,
    "float": 1.5,
    "digits": "123",
    "true": True,
    "tuple": ("payload", 1),
    "short": "s",  # below the compressor's minimum length: stored uncompressed
    "long": "x" * 5000,
}


class TextSerializer:
    """A serializer of the user's own (``OPTIONS["serializer"]``): text, not pickle."""

    def dumps(self, value: Any) -> bytes:
        return repr(value).encode()

    def loads(self, data: bytes) -> Any:
        return ("text", data.decode())


@pytest.mark.parametrize(
    "options", [{}, {"serializer": "tests.test_reads.TextSerializer"}], ids=["stock", "custom"]
)
def test_django_redis_cache_reads_give_django_s_answers(
    redis_server: RedisServer, options: dict[str, Any]
) -> None:
    """Integers, and pickles whether or not they could start like one, decode as Django's own."""
    entry = cache_settings("redis", redis_server.url, counting=False, options=options)
    entry.update(KEY_PREFIX="site", VERSION=3)
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        cache.clear()
        cache.set_many(VALUES)
        expected = cache.get_many([*VALUES, "missing"])
        assert set(expected) == set(VALUES)
        assert reads.get_many(cache, [*VALUES, "missing"]) == expected
        for key in VALUES:
            assert reads.get(cache, key) == expected[key]


# -- django-redis: its own connection, keys and decoding, without the wrappers --------


class Wrapped:
    """Counts calls of ``DefaultClient.get`` / ``get_many``, the wrapped reads."""

    def __init__(self, cache: Any) -> None:
        self.client = cache.client
        self.calls = 0

    def __enter__(self) -> Wrapped:
        for name in ("get", "get_many"):
            original = getattr(self.client, name)

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.calls += 1
                return _original(*args, **kwargs)

            setattr(self.client, name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("get", "get_many"):
            delattr(self.client, name)


def django_redis_entry(location: str, **options: Any) -> dict[str, Any]:
    entry = cache_settings("django_redis", location, counting=False, options=options)
    entry.update(KEY_PREFIX="site", VERSION=3)
    return entry


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"SERIALIZER": "django_redis.serializers.json.JSONSerializer"},
        {"COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor"},
    ],
    ids=["pickle", "json", "zlib"],
)
def test_django_redis_reads_give_django_redis_s_answers(
    redis_server: RedisServer, options: dict[str, Any]
) -> None:
    """Prefix, version, serializer and compressor apply, and the wrapped reads are skipped."""
    with override_settings(CACHES={"default": django_redis_entry(redis_server.url, **options)}):
        cache = caches["default"]
        assert type(cache) is DjangoRedisCache
        cache.clear()
        cache.set_many(VALUES)
        cache.set("tuple", "other version", version=4)
        expected = cache.get_many([*VALUES, "missing"])
        assert set(expected) == set(VALUES)
        with Wrapped(cache) as wrapped:
            assert reads.get_many(cache, [*VALUES, "missing"]) == expected
            assert reads.get(cache, "tuple") == expected["tuple"]
            assert reads.get(cache, "missing") is None
        assert wrapped.calls == 0


def test_a_django_redis_fragment_hit_skips_the_wrapped_reads(redis_server: RedisServer) -> None:
    article = Article.objects.create(title="t")
    counter = Counter()
    with override_settings(CACHES={"default": django_redis_entry(redis_server.url)}):
        cache = caches["default"]
        cache.clear()
        assert render(FRAGMENT, article=article, counter=counter) == "t 1"
        with Wrapped(cache) as wrapped:
            assert render(FRAGMENT, article=article, counter=counter) == "t 1"
            article.save()
            assert render(FRAGMENT, article=article, counter=counter) == "t 2"
        assert wrapped.calls == 0


def test_a_down_django_redis_raises_what_django_redis_raises() -> None:
    with override_settings(CACHES={"default": django_redis_entry(f"127.0.0.1:{free_port()}")}):
        cache = caches["default"]
        with pytest.raises(Exception) as stock_error:
            cache.get_many(["a"])
        with pytest.raises(Exception) as direct_error:
            reads.get_many(cache, ["a"])
        assert type(direct_error.value) is type(stock_error.value)
        with pytest.raises(type(stock_error.value)):
            reads.get(cache, "a")


def test_django_redis_ignoring_exceptions_reads_as_django_redis_does() -> None:
    entry = django_redis_entry(f"127.0.0.1:{free_port()}", IGNORE_EXCEPTIONS=True)
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        assert reads.get_many(cache, ["a"]) == {}
        assert reads.get(cache, "a") is None


class AuditedClient(DefaultClient):
    """A project's django-redis client that adds to ``get_many``."""

    audited: list[list[str]] = []

    def get_many(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        self.audited.append(list(keys))
        return super().get_many(keys, *args, **kwargs)


def test_django_redis_with_another_client_class_reads_through_it(
    redis_server: RedisServer,
) -> None:
    entry = django_redis_entry(redis_server.url, CLIENT_CLASS=f"{__name__}.AuditedClient")
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        cache.set("a", 1)
        AuditedClient.audited.clear()
        assert reads.get_many(cache, ["a"]) == {"a": 1}
    assert AuditedClient.audited == [["a"]]


# -- the reader: chosen once per cache object, wrappers on the object honoured ---------


def stock_entry(kind: str, memcached_server: MemcachedServer, redis_server: RedisServer) -> Any:
    location = memcached_server.location if kind == "memcached" else redis_server.url
    entry = cache_settings(kind, location, counting=False)
    entry.update(KEY_PREFIX="site", VERSION=3)
    return entry


@pytest.mark.parametrize("kind", ["memcached", "redis", "django_redis"])
def test_a_wrapper_set_on_the_cache_object_is_read_through(
    memcached_server: MemcachedServer, redis_server: RedisServer, kind: str
) -> None:
    """Set after the first read (a debug panel's, a test's spy), then removed again."""
    with override_settings(CACHES={"default": stock_entry(kind, memcached_server, redis_server)}):
        cache = caches["default"]
        cache.set_many({"a": 1, "b": 2})
        assert reads.get_many(cache, ["a", "b"]) == {"a": 1, "b": 2}
        seen: list[Any] = []
        stock_get_many, stock_get = cache.get_many, cache.get

        def get_many(keys: list[str], version: int | None = None) -> dict[str, Any]:
            seen.append(("get_many", list(keys)))
            return stock_get_many(keys, version=version)

        def get(key: str, default: Any = None, version: int | None = None) -> Any:
            seen.append(("get", key))
            return stock_get(key, default, version=version)

        cache.get_many = get_many  # type: ignore[method-assign]
        cache.get = get  # type: ignore[method-assign]
        assert reads.get_many(cache, ["a", "b", "missing"]) == {"a": 1, "b": 2}
        assert reads.get(cache, "b") == 2
        assert seen == [("get_many", ["a", "b", "missing"]), ("get", "b")]

        del cache.get_many, cache.get
        assert reads.get_many(cache, ["a"]) == {"a": 1}
        assert len(seen) == 2


def test_the_reader_is_chosen_once_per_cache_object(
    memcached_server: MemcachedServer, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new ``CACHES`` makes new cache objects, which choose their own reader."""
    chosen: list[str] = []
    choose = reads._choose

    def counted(cache: Any) -> reads.Reader:
        reader = choose(cache)
        chosen.append(type(reader).__name__)
        return reader

    monkeypatch.setattr(reads, "_choose", counted)
    for kind in ("memcached", "redis"):
        with override_settings(
            CACHES={"default": stock_entry(kind, memcached_server, redis_server)}
        ):
            cache = caches["default"]
            cache.set("a", kind)
            for _ in range(3):
                assert reads.get_many(cache, ["a"]) == {"a": kind}
                assert reads.get(cache, "a") == kind
    assert chosen == ["PymemcacheReader", "RedisCacheReader"]
