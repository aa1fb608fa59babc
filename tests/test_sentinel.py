"""Redis Sentinel through django-redis: reads from the master, sweeps land, failover.

Real servers: a master, a replica and one ``redis-server --sentinel`` watching them
(:class:`~tests.servers.RedisSentinel`). django-redis asks the sentinel for the master
(``SentinelConnectionFactory``), in the two shapes its documentation gives: the
``SentinelClient`` with one ``LOCATION``, and the ``DefaultClient`` with an
``is_master=1`` and an ``is_master=0`` URL. Both send the backend's own reads to the
replica, which may lag behind a sweep; cachesweeper reads entries and tokens from the
master (``reads.DjangoRedisReader``).

The replica replicates through a proxy the test cuts (as in ``tests/test_replicas.py``).
Sentinel would point a replica that names another master back at the real one after
its failover timeout, so that fixture's timeout is longer than the module runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client, override_settings

import cachesweeper
from cachesweeper import reads
from cachesweeper import retries as retry_queue
from tests.helpers import Counter, missed_keys, reloaded, render
from tests.reliability.proxy import CuttableProxy
from tests.servers import LOOPBACK, RedisSentinel, RedisServer, need_binary
from tests.test_replicas import Replicated
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.servers]

FRAGMENT = (
    "{% load cachesweeper %}"
    "{% cachesweeper article 60 %}{{ article.title }} {{ counter.next }}{% endcachesweeper %}"
)
#: A master's first sync of a replica without Redis 7's 5 s wait for more replicas.
QUICK_SYNC = ["--repl-diskless-sync-delay", "0"]
#: The two ways django-redis's documentation configures Sentinel.
CLIENTS = ["SentinelClient", "DefaultClient"]


@dataclass
class Watched:
    replicated: Replicated
    sentinel: RedisSentinel


def sentinel_cache(sentinel: RedisSentinel, client: str) -> dict[str, Any]:
    """A django-redis ``CACHES`` entry that finds the master through ``sentinel``.

    The connection factory is set per cache (``OPTIONS["CONNECTION_FACTORY"]``), as
    ``DJANGO_REDIS_CONNECTION_FACTORY`` would set it for every django-redis cache.
    """
    service = sentinel.service  # django-redis keeps pools per URL, process-wide: one per test
    options: dict[str, Any] = {
        "SENTINELS": [(LOOPBACK, sentinel.port)],
        "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
        "SOCKET_CONNECT_TIMEOUT": 0.5,
        "SOCKET_TIMEOUT": 0.5,
    }
    location: str | list[str]
    if client == "SentinelClient":
        options["CLIENT_CLASS"] = "django_redis.client.SentinelClient"
        location = f"redis://{service}/0"
    else:
        location = [f"redis://{service}/0?is_master=1", f"redis://{service}/0?is_master=0"]
    return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": location, "OPTIONS": options}


@pytest.fixture(scope="module")
def watched() -> Iterator[Watched]:
    need_binary("redis-server")
    with RedisServer(extra_args=QUICK_SYNC) as primary:
        assert isinstance(primary, RedisServer)
        link = CuttableProxy(LOOPBACK, primary.port)
        with RedisServer(extra_args=["--replicaof", LOOPBACK, str(link.port)]) as replica:
            assert isinstance(replica, RedisServer)
            replicated = Replicated(primary, replica, link)
            replicated.in_sync()
            service = f"cachesweeper{primary.port}"
            with RedisSentinel(service, primary.port, failover_timeout_ms=600_000) as sentinel:
                assert isinstance(sentinel, RedisSentinel)
                sentinel.wait_for_replicas()
                yield Watched(replicated, sentinel)
        link.cut()


@pytest.fixture(params=CLIENTS)
def sentinel_backend(request: pytest.FixtureRequest, watched: Watched) -> Iterator[Watched]:
    with override_settings(CACHES={"default": sentinel_cache(watched.sentinel, request.param)}):
        caches["default"].clear()
        watched.replicated.in_sync()
        yield watched
    if watched.replicated.link.is_cut:
        watched.replicated.link.restore()


def test_entries_and_tokens_are_read_from_the_master(sentinel_backend: Watched) -> None:
    """Not through the backend's own reads, which go to the replica."""
    cache = caches["default"]
    assert isinstance(reads.reader(cache), reads.DjangoRedisReader)
    cache.set("a", 1)
    sentinel_backend.replicated.link.cut()
    cache.set("a", 2)  # the master only
    assert reads.get(cache, "a") == 2
    assert reads.get_many(cache, ["a"]) == {"a": 2}


def test_hits_and_sweeps_land(sentinel_backend: Watched) -> None:
    counter = Counter()
    article = Article.objects.create(title="a")
    assert render(FRAGMENT, article=article, counter=counter) == "a 1"
    with missed_keys() as missed:
        assert render(FRAGMENT, article=article, counter=counter) == "a 1"
    assert missed == []
    article.title = "b"
    article.save()
    assert retry_queue.queue.unconfirmed == frozenset(), "the sweep landed"
    assert render(FRAGMENT, article=reloaded(article), counter=counter) == "b 2"
    assert render(FRAGMENT, article=reloaded(article), counter=counter) == "b 2"


def test_no_stale_read_through_a_lagging_replica(sentinel_backend: Watched) -> None:
    replicated = sentinel_backend.replicated
    counter = Counter()
    article = Article.objects.create(title="old")
    render(FRAGMENT, article=article, counter=counter)
    replicated.in_sync()  # the replica holds the entry and its tokens
    assert render(FRAGMENT, article=article, counter=counter) == "old 1"
    replicated.link.cut()  # from now on the replica keeps them as they are

    Article.objects.filter(pk=article.pk).update(title="new")
    cachesweeper.invalidate_cache_for(article)
    for _ in range(20):  # a read on the replica would find the old token next to the old entry
        assert render(FRAGMENT, article=reloaded(article), counter=counter) == "new 2"


@pytest.fixture
def failing_over() -> Iterator[tuple[RedisServer, RedisServer, RedisSentinel]]:
    """A master, its replica and a sentinel quick to fail over (half a second down)."""
    need_binary("redis-server")
    with RedisServer(extra_args=QUICK_SYNC) as primary:
        assert isinstance(primary, RedisServer)
        with RedisServer(extra_args=["--replicaof", LOOPBACK, str(primary.port)]) as replica:
            assert isinstance(replica, RedisServer)
            Replicated(primary, replica, None).in_sync()
            service = f"cachesweeper{primary.port}"
            with RedisSentinel(
                service, primary.port, down_after_ms=500, failover_timeout_ms=5000
            ) as sentinel:
                assert isinstance(sentinel, RedisSentinel)
                sentinel.wait_for_replicas()
                yield primary, replica, sentinel


@pytest.mark.parametrize("client", CLIENTS)
def test_a_failover_fails_open_then_hits_and_sweeps_work_on_the_new_master(
    failing_over: tuple[RedisServer, RedisServer, RedisSentinel],
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary, replica, sentinel = failing_over
    counter = Counter()
    with override_settings(CACHES={"default": sentinel_cache(sentinel, client)}):
        article = Article.objects.create(title="a")
        assert render(FRAGMENT, article=article, counter=counter) == "a 1"
        assert render(FRAGMENT, article=article, counter=counter) == "a 1"

        primary.stop()
        with caplog.at_level(logging.WARNING, "cachesweeper"):
            assert render(FRAGMENT, article=article, counter=counter) == "a 2", "uncached"
            assert Client().get("/articles/").status_code == 200
            article.title = "b"
            article.save()  # its bump cannot land yet: retried
        messages = [r.getMessage() for r in caplog.records if r.name == "cachesweeper"]
        assert any("cache unreachable" in message for message in messages), messages

        sentinel.wait_for_master(replica.port)
        deadline = time.monotonic() + 15
        while retry_queue.queue.unconfirmed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not retry_queue.queue.unconfirmed, "the sweep landed on the new master"
        # The new master replicated "a 1" and its tokens before the old one went away;
        # the sweep retired them.
        fresh = render(FRAGMENT, article=reloaded(article), counter=counter)
        assert fresh.startswith("b ")
        with missed_keys() as missed:
            assert render(FRAGMENT, article=reloaded(article), counter=counter) == fresh
        assert missed == []
        article.title = "c"
        article.save()
        assert retry_queue.queue.unconfirmed == frozenset()
        assert render(FRAGMENT, article=reloaded(article), counter=counter).startswith("c ")
