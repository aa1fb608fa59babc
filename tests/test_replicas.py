"""A Redis primary with a replica: no read after a committed sweep serves the old content.

Django's ``RedisCache`` and django-redis read from a replica when ``LOCATION`` lists one.
The replica here replicates through a proxy the test cuts, as a slow or partitioned
link would: it keeps the old tokens next to the old entries for as long as the cut
lasts. cachesweeper reads entries and tokens from the primary (``reads.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

import cachesweeper
from tests.helpers import missed_keys, render
from tests.reliability.proxy import CuttableProxy
from tests.servers import LOOPBACK, RedisServer, need_binary
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

FRAGMENT = (
    "{% load cachesweeper %}{% cachesweeper article 60 %}{{ article.title }}{% endcachesweeper %}"
)
BACKENDS = {
    "redis": "django.core.cache.backends.redis.RedisCache",
    "django_redis": "django_redis.cache.RedisCache",
}


class Replicated:
    def __init__(
        self, primary: RedisServer, replica: RedisServer, link: CuttableProxy | None
    ) -> None:
        self.primary, self.replica = primary, replica
        self._link = link

    @property
    def link(self) -> CuttableProxy:
        """The proxy the replica replicates through, for a test to cut."""
        assert self._link is not None, "this replica replicates directly"
        return self._link

    def in_sync(self, timeout: float = 10.0) -> None:
        """Wait until the replica has everything the primary has."""
        client = redis.Redis(host=LOOPBACK, port=self.replica.port)
        source = redis.Redis(host=LOOPBACK, port=self.primary.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = client.info("replication")
            wanted = source.info("replication")["master_repl_offset"]
            if (
                info.get("master_link_status") == "up"
                and info.get("slave_repl_offset", -1) >= wanted
            ):
                return
            time.sleep(0.02)
        raise AssertionError("the replica did not catch up")


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    need_binary("redis-server")
    with RedisServer() as primary:
        assert isinstance(primary, RedisServer)
        link = CuttableProxy(LOOPBACK, primary.port)
        replica = RedisServer(extra_args=["--replicaof", LOOPBACK, str(link.port)])
        with replica:
            setup = Replicated(primary, replica, link)
            setup.in_sync()
            yield setup
        link.cut()


@pytest.fixture(params=list(BACKENDS))
def cache_with_replica(request: pytest.FixtureRequest, replicated: Replicated) -> Iterator[Any]:
    location = [replicated.primary.url, replicated.replica.url]  # the primary first
    with override_settings(
        CACHES={"default": {"BACKEND": BACKENDS[request.param], "LOCATION": location}}
    ):
        caches["default"].clear()
        replicated.in_sync()
        yield replicated
    if replicated.link.is_cut:
        replicated.link.restore()


def test_a_sweep_is_never_read_around_through_a_lagging_replica(cache_with_replica: Any) -> None:
    article = Article.objects.create(title="old")
    for _ in range(3):
        render(FRAGMENT, article=article)
        cache_with_replica.in_sync()  # the replica holds the entry and its tokens
    with missed_keys() as missed:
        assert render(FRAGMENT, article=article) == "old"
    assert missed == []  # a hit
    cache_with_replica.link.cut()  # from now on the replica keeps them as they are

    Article.objects.filter(pk=article.pk).update(title="new")
    article.refresh_from_db()
    cachesweeper.invalidate_cache_for(article)
    for _ in range(20):  # a read on the replica would find the old token next to the old entry
        assert render(FRAGMENT, article=Article.objects.get(pk=article.pk)) == "new"


def test_hits_still_come_from_the_cache_with_a_replica(cache_with_replica: Any) -> None:
    article = Article.objects.create(title="cached")
    render(FRAGMENT, article=article)  # stored at once: no waiting for the replica
    Article.objects.filter(pk=article.pk).update(title="changed without a sweep")
    with missed_keys() as missed:
        assert render(FRAGMENT, article=Article.objects.get(pk=article.pk)) == "cached"
    assert missed == []
