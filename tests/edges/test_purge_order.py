"""Edges hear of a sweep after its tokens moved, never before.

An edge that is purged before the bump refetches the page from Django, which
still serves the old entry under the old token, and keeps it for its TTL. So
a sweep purges only the names whose bump landed; a bump that failed purges
(names and URLs alike) when its retry lands.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from django.core.cache import caches
from django.test import override_settings

import cachesweeper
from cachesweeper import retries as retries_module
from cachesweeper.edges import queue
from cachesweeper.edges.base import Edge, PurgeBatch
from cachesweeper.retries import RetryQueue
from cachesweeper.tokens import token_key
from tests.conftest import SERVER_KINDS
from tests.edges.recording import RecordingEdge
from tests.helpers import render
from tests.reliability.proxy import CuttableProxy
from tests.servers import cache_settings
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

RECORDING = {"EDGES": [{"BACKEND": "tests.edges.recording.RecordingEdge"}]}


class TokenWitness(Edge):
    """A request-bound edge that notes the article's token at the moment it is purged."""

    request_bound = True
    seen: ClassVar[list[Any]] = []

    def purge(self, batch: PurgeBatch) -> None:
        for name in batch.names:
            type(self).seen.append((name, caches["default"].get(token_key(name))))


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[RetryQueue]:
    """A retry queue of the test's own that only retries when the test flushes it."""
    queue = RetryQueue()
    queue.first_delay = 60
    monkeypatch.setattr("cachesweeper.retries.queue", queue)
    yield queue
    with queue._lock:
        queue._names.clear()


def test_an_edge_is_purged_after_the_token_moved(cache_backend: str) -> None:
    article = Article.objects.create(title="a")
    name = f"testapp.article.{article.pk}"
    before = caches["default"].get(token_key(name))
    TokenWitness.seen = []
    edges = {"EDGES": [{"BACKEND": f"{__name__}.TokenWitness"}]}
    with override_settings(CACHESWEEPER=edges):
        cachesweeper.invalidate_cache_for(article)
    [token] = [token for purged, token in TokenWitness.seen if purged == name]
    assert token is not None and token != before


@pytest.fixture(params=SERVER_KINDS)
def cut_cache(request: pytest.FixtureRequest) -> Iterator[CuttableProxy]:
    """``CACHES["default"]`` of each server kind, reached through a proxy the test can cut."""
    kind = request.param
    server = request.getfixturevalue("memcached_server" if kind == "memcached" else "redis_server")
    host, port = server.location.rsplit(":", 1)
    proxy = CuttableProxy(host, int(port))
    options = {"retry_timeout": 0, "dead_timeout": 0} if kind == "memcached" else None
    entry = cache_settings(kind, proxy.location, counting=False, timeout=0.25, options=options)
    try:
        with override_settings(CACHES={"default": entry}, CACHESWEEPER=RECORDING):
            caches["default"].clear()
            RecordingEdge.reset()
            yield proxy
    finally:
        proxy.close()


def test_a_failed_bump_purges_nothing_until_its_retry_lands(
    cut_cache: CuttableProxy, retries: RetryQueue
) -> None:
    article = Article.objects.create(title="old")
    name = f"testapp.article.{article.pk}"
    source = "{% cachesweeper article 60 %}{{ article.title }}{% endcachesweeper %}"
    assert render(source, article=article) == "old"
    assert queue.purges.flush(5)
    RecordingEdge.reset()

    cut_cache.cut()
    article.title = "new"
    article.save()  # the bump cannot reach the version cache: it is retried
    assert name in retries.pending()
    assert queue.purges.flush(5)
    assert RecordingEdge.received == []  # nothing purged, URLs neither

    cut_cache.restore()
    assert retries.flush() == []
    assert queue.purges.flush(5)
    assert {name, "testapp.article"} <= RecordingEdge.names()
    assert (None, f"/article/{article.pk}/") in RecordingEdge.urls()


def test_a_bump_that_lands_at_exit_still_purges(
    cut_cache: CuttableProxy, retries: RetryQueue
) -> None:
    """The purge queue's exit hook runs before the sweeps' (atexit: last in, first out)."""
    article = Article.objects.create(title="old")
    name = f"testapp.article.{article.pk}"
    assert queue.purges.flush(5)
    RecordingEdge.reset()
    cut_cache.cut()
    article.save()
    queue.flush_at_exit()  # the purge queue's own hook: nothing to deliver yet
    cut_cache.restore()

    retries_module._flush_at_exit()  # the retry lands, and its purges are delivered

    assert name in RecordingEdge.names()
    assert queue.purges.pending() == 0
