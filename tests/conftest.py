r"""Suite-wide fixtures: real cache servers and a cache backend per test.

Fixtures (see ``tests/servers.py`` and ``tests/counting.py`` for the helpers behind them):

``memcached_server``, ``redis_server``
    One real server each per test session (a :class:`~tests.servers.MemcachedServer` /
    :class:`~tests.servers.RedisServer`), on free loopback ports. Missing binary: the test
    fails on CI (``CI=true``) and is skipped elsewhere.
``memcached_pool``
    Three more memcached servers per session, for a ``PyMemcacheCache`` with several
    ``LOCATION`` entries (``tests/test_pool.py``). A test that stops one restarts it, or the
    fixture does before the next test that asks for the pool.
``redis_cluster``
    One real Redis Cluster per test session (a :class:`~tests.servers.RedisCluster`): three
    ``redis-server --cluster-enabled yes`` masters with the slots split evenly. A test that
    stopped a node gets it back (restarted, empty) before the next test uses the cluster.
    Missing binary: a failure on CI, a skip elsewhere.
``postgres_server``
    A PostgreSQL cluster (:class:`~tests.servers.PostgresServer`) per test session, for
    the journal's tests; missing ``postgres``/``initdb`` fail on CI like the others.
``cache_backend``
    Runs the test once per cache kind, ``locmem``, ``memcached``, ``django_redis`` and
    ``redis``, with ``CACHES["default"]`` pointed at a counting backend of that kind (see
    ``tests/counting.py``), emptied, with an empty call log. Yields the kind. Only the
    server kinds start servers, so ``-k locmem`` runs anywhere. To run one kind only:
    ``@pytest.mark.parametrize("cache_backend", ["redis"], indirect=True)``.
``_background_work_stays_in_its_test`` (autouse)
    After each test, waits out a purge being delivered, then discards what the test left
    in the process's purge queue, sweep retry queue and relay, and forgets which caches were
    warned about as unreachable. Otherwise a test that queued
    purges for a dead edge keeps the purge thread retrying, and logging, during the
    tests after it, and an unconfirmed token slows their hits down the general path.
``down_cache_backend``
    ``memcached``, ``django_redis`` and ``redis`` pointed at a loopback port where nothing
    listens, with short timeouts, for fail-open tests. The clients keep their default
    failure handling, because that is what users get. Beware pymemcache's ``HashClient``
    (Django's PyMemcacheCache): the first call raises ``ConnectionRefusedError``, but for
    the next ``retry_timeout`` (1 s) calls return quietly, with ``get`` giving the default,
    ``get_many`` giving ``{}``, ``set`` giving ``None`` and ``incr`` giving ``False`` (no
    ``ValueError``!), and once its retries are used up every call raises
    ``MemcacheError("All servers seem to be down right now")``. So a sweep's ``incr`` on a
    dead memcached can "succeed" with ``False``. The Redis clients raise every time.

Tests that use a server are marked ``servers`` automatically (``-m "not servers"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings
from hypothesis import settings as hypothesis_settings

from cachesweeper import outages
from cachesweeper import retries as retry_queue
from cachesweeper.edges import queue
from cachesweeper.relay import relay
from tests.counting import CountingCacheMixin
from tests.servers import (
    CACHE_KINDS,
    BinaryNotFound,
    MemcachedServer,
    PostgresServer,
    RedisCluster,
    RedisServer,
    ServerProcess,
    cache_settings,
    free_port,
    in_ci,
)

# Real servers make individual examples slower and less even than Hypothesis' 200 ms
# default deadline assumes; a deadline failure there would be noise, not a finding.
# On CI the examples are derandomized (the same ones each run, as Hypothesis advises for
# CI), so a red run can be reproduced; local runs keep exploring new examples.
hypothesis_settings.register_profile("cachesweeper", deadline=None, derandomize=in_ci())
hypothesis_settings.load_profile("cachesweeper")

S = TypeVar("S", bound=ServerProcess)

# The Wagtail site runs with its own settings (tests/wagtail_site/settings.py), as a
# pytest run of its own: see scripts/test.
collect_ignore = [] if "wagtail" in settings.INSTALLED_APPS else ["wagtail_site"]

SERVER_FIXTURES = {
    "memcached_server",
    "redis_server",
    "memcached_pool",
    "redis_cluster",
    "postgres_server",
}
SERVER_KINDS = ("memcached", "django_redis", "redis")


def _start(factory: type[ServerProcess]) -> ServerProcess:
    try:
        return factory().start()
    except BinaryNotFound as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    server = _start(MemcachedServer)
    assert isinstance(server, MemcachedServer)
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = _start(RedisServer)
    assert isinstance(server, RedisServer)
    yield server
    server.close()


@pytest.fixture(scope="session")
def _memcached_pool_servers() -> Iterator[list[MemcachedServer]]:
    servers: list[MemcachedServer] = []
    try:
        for _ in range(3):
            server = _start(MemcachedServer)
            assert isinstance(server, MemcachedServer)
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def memcached_pool(_memcached_pool_servers: list[MemcachedServer]) -> list[MemcachedServer]:
    return [_running(server) for server in _memcached_pool_servers]


@pytest.fixture(scope="session")
def _session_cluster() -> Iterator[RedisCluster]:
    try:
        cluster = RedisCluster().start()
    except BinaryNotFound as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    yield cluster
    cluster.close()


@pytest.fixture
def redis_cluster(_session_cluster: RedisCluster) -> RedisCluster:
    """The session's cluster, every node running and empty."""
    import redis

    stopped = [node for node in _session_cluster.nodes if not node.running]
    for node in stopped:
        node.restart()
    if stopped:
        _session_cluster.wait_until_ok()
    for node in _session_cluster.nodes:
        with redis.Redis(host=node.host, port=node.port) as client:
            client.flushall()
    return _session_cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = _start(PostgresServer)
    assert isinstance(server, PostgresServer)
    yield server
    server.close()


def _running(server: S) -> S:
    """A test that stopped a shared server must not break the tests after it."""
    if not server.running:
        server.restart()
    return server


def _location(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "locmem":
        return "cachesweeper-tests-counting"
    if kind == "memcached":
        memcached: MemcachedServer = request.getfixturevalue("memcached_server")
        return _running(memcached).location
    redis: RedisServer = request.getfixturevalue("redis_server")
    return _running(redis).url


@pytest.fixture(params=list(CACHE_KINDS))
def cache_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    kind: str = request.param
    entry = cache_settings(kind, _location(request, kind))
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        assert isinstance(cache, CountingCacheMixin)
        cache.clear()
        cache.reset_calls()
        yield kind


@pytest.fixture(autouse=True)
def _background_work_stays_in_its_test() -> Iterator[None]:
    yield
    purges = queue.purges
    with purges._condition:
        purges._condition.wait_for(lambda: not purges._busy, timeout=5.0)
        purges._work.clear()
    retries = retry_queue.queue
    with retries._lock:
        retries._names.clear()
        retries.journaled.clear()
        retries.unconfirmed = frozenset()
    with relay._lock:  # journal rows of this test's database, which is gone
        relay._waiting.clear()
        relay._done.clear()
        relay._covers.clear()
    outages.forget()  # the next test's first failure of a cache warns again


@pytest.fixture(params=SERVER_KINDS)
def down_cache_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    kind: str = request.param
    # A port that was free a moment ago and that nothing here binds: connection refused.
    entry = cache_settings(kind, f"127.0.0.1:{free_port()}", timeout=0.5)
    with override_settings(CACHES={"default": entry}):
        yield kind


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real server, so ``-m "not servers"`` runs anywhere."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if fixtures & SERVER_FIXTURES or params.get("cache_backend") in SERVER_KINDS:
            item.add_marker(pytest.mark.servers)
