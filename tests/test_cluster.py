"""Redis Cluster: django-valkey's ``ClusterValkeyCache`` works; others get one clear error.

The cluster is real (``redis_cluster`` in ``tests/conftest.py``): three
``redis-server --cluster-enabled yes`` masters, their slots assigned and joined with
``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET``. An entry and its tokens hash to
different slots, so most reads here span nodes. A sweep a down node missed is kept in the
journal and replayed by the relay (``cachesweeper/journal.py``, ``relay.py``).

Django's ``RedisCache`` and django-redis speak to one server; a cluster node answers
them ``MOVED`` or ``CROSSSLOT`` for most keys. cachesweeper cannot make that work, but it
must say what is wrong instead of "cache unreachable" (``outages.py``), and fail open.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.db import transaction
from django.test import Client, override_settings

# The [valkey] extra is part of [test]: on CI a broken install fails here, never skips.
from django_valkey.cluster_cache.cache import ClusterValkeyCache
from valkey.cluster import ClusterPipeline, ValkeyCluster

import cachesweeper
from cachesweeper import outages, reads, signals, tokens, writes
from cachesweeper import retries as retry_queue
from cachesweeper.edges import queue
from cachesweeper.models import JournaledSweep
from cachesweeper.relay import relay
from cachesweeper.tokens import token_key
from tests.edges.recording import RecordingEdge
from tests.helpers import Counter, reloaded, render
from tests.servers import RedisCluster, RedisServer
from tests.testapp import views
from tests.testapp.models import Article, Page

pytestmark = pytest.mark.django_db(transaction=True)


BACKENDS = {
    "redis": "django.core.cache.backends.redis.RedisCache",
    "django_redis": "django_redis.cache.RedisCache",
}
FRAGMENT = (
    "{% cachesweeper article 60 %}{{ article.title }} {{ counter.next }}{% endcachesweeper %}"
)
LIST = (
    "{% cachesweeper_for a in articles 60 %}{{ a.title }}:{{ counter.next }} "
    "{% endcachesweeper_for %}"
)
EDGES = [{"BACKEND": "tests.edges.recording.RecordingEdge"}]
MIDDLEWARE = ["cachesweeper.middleware.EdgeMiddleware"]


def valkey_cluster(cluster: RedisCluster, **options: Any) -> dict[str, Any]:
    """A ``CACHES`` entry for django-valkey's cluster backend on ``cluster``.

    Its connection factory passes ``BASE_CLIENT_KWARGS`` to ``ValkeyCluster``, not
    ``SOCKET_TIMEOUT``: timeouts go there.
    """
    kwargs = {"socket_timeout": 1, "socket_connect_timeout": 1, **options}
    return {
        "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
        "LOCATION": cluster.url,
        "OPTIONS": {"BASE_CLIENT_KWARGS": kwargs},
    }


@pytest.fixture
def cluster_cache(redis_cluster: RedisCluster) -> Iterator[RedisCluster]:
    with override_settings(CACHES={"default": valkey_cluster(redis_cluster)}):
        yield redis_cluster


@pytest.fixture
def served() -> Iterator[list[str]]:
    """``hit``, ``miss`` or ``stale`` for every fragment served, as the signals report."""
    states: list[str] = []
    receivers = {
        "hit": signals.fragment_hit,
        "miss": signals.fragment_miss,
        "stale": signals.fragment_stale,
    }

    def recorder(state: str) -> Any:
        def receive(sender: Any, **kwargs: Any) -> None:
            states.append(state)

        return receive

    kept = [recorder(state) for state in receivers]
    for receive, signal in zip(kept, receivers.values(), strict=True):
        signal.connect(receive, weak=False)
    yield states
    for receive, signal in zip(kept, receivers.values(), strict=True):
        signal.disconnect(receive)


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Fails the test if cachesweeper warned: a working cluster is no outage."""
    with caplog.at_level(logging.WARNING, "cachesweeper"):
        yield caplog
    complaints = [r.getMessage() for r in caplog.records if r.name == "cachesweeper"]
    assert not complaints, complaints


def nodes_holding(cluster: RedisCluster) -> list[int]:
    """How many keys each node holds."""
    sizes = []
    for node in cluster.nodes:
        with redis.Redis(host=node.host, port=node.port) as client:
            sizes.append(client.dbsize())
    return sizes


@pytest.mark.usefixtures("cluster_cache", "quiet")
def test_fragments_hit_and_sweeps_land(redis_cluster: RedisCluster, served: list[str]) -> None:
    counter = Counter()
    articles = [Article.objects.create(title=f"t{n}") for n in range(5)]
    first = [render(FRAGMENT, article=article, counter=counter) for article in articles]
    assert first == [f"t{n} {n + 1}" for n in range(5)]
    assert [render(FRAGMENT, article=article, counter=counter) for article in articles] == first
    assert served == ["miss"] * 5 + ["hit"] * 5
    assert sum(1 for size in nodes_holding(redis_cluster) if size) >= 2, "keys on several nodes"

    article = articles[0]
    article.title = "b"
    article.save()  # registered: the sweep bumps its tokens after commit
    assert retry_queue.queue.unconfirmed == frozenset(), "the sweep landed"
    article = reloaded(article)
    assert render(FRAGMENT, article=article, counter=counter) == "b 6"
    assert render(FRAGMENT, article=article, counter=counter) == "b 6"
    cachesweeper.invalidate_tag("frontpage")
    cachesweeper.invalidate_model(Article)
    assert retry_queue.queue.unconfirmed == frozenset()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One name per batch the cluster client sends: a pipeline (to every node it spans,
    written to all before any is read: one round trip) or a single command."""
    sent: list[str] = []
    pipelined = ClusterPipeline._send_cluster_commands
    single = ValkeyCluster._execute_command

    def pipeline(self: Any, stack: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append("pipeline")
        return pipelined(self, stack, *args, **kwargs)

    def command(self: Any, target_node: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return single(self, target_node, *args, **kwargs)

    monkeypatch.setattr(ClusterPipeline, "_send_cluster_commands", pipeline)
    monkeypatch.setattr(ValkeyCluster, "_execute_command", command)
    return sent


@pytest.mark.usefixtures("cluster_cache", "quiet")
def test_a_hit_a_list_and_a_sweep_are_one_batch_each(
    redis_cluster: RedisCluster, round_trips: list[str]
) -> None:
    cache = caches["default"]
    assert isinstance(cache, ClusterValkeyCache)
    assert isinstance(writes.writer(cache), writes.ValkeyClusterWriter)
    assert isinstance(reads.reader(cache), reads.ValkeyClusterReader)
    articles = [Article.objects.create(title=f"t{n}") for n in range(30)]
    counter = Counter()
    render(LIST, articles=articles, counter=counter)
    render(FRAGMENT, article=articles[0], counter=counter)
    round_trips.clear()

    render(FRAGMENT, article=articles[0], counter=counter)
    assert round_trips == ["pipeline"], "a hit: entry and token, from their nodes at once"
    round_trips.clear()
    render(LIST, articles=articles, counter=counter)
    assert round_trips == ["pipeline"], "a list of 30 hits: one batch"
    round_trips.clear()
    cachesweeper.invalidate_model(Article)
    assert round_trips == ["pipeline"], "a sweep: one batch"
    assert counter.value == 31, "every render after the first two was a hit"
    assert all(nodes_holding(redis_cluster)), "the keys span every node"

    page = Page.objects.create(title="p")  # versioned by updated_at: no token to read
    on_page = "{% cachesweeper page 60 %}{{ page.title }} {{ counter.next }}{% endcachesweeper %}"
    assert render(on_page, page=page, counter=counter) == "p 32"
    round_trips.clear()
    assert render(on_page, page=page, counter=counter) == "p 32"
    assert round_trips == ["GET"], "an attribute hit: one GET"


def test_a_set_many_answer_that_names_no_key_is_no_failure() -> None:
    """django-valkey's cluster ``set_many`` answers one ``True`` per slot."""

    class Answers:
        def set_many(self, values: dict[str, Any], timeout: float | None) -> Any:
            return [True, True, "b", "elsewhere"]

    assert writes.PLAIN.set_many(Answers(), {"a": 1, "b": 2}, None) == ["b"]  # type: ignore[arg-type]


@pytest.mark.usefixtures("cluster_cache", "quiet")
def test_entries_expire_as_asked(redis_cluster: RedisCluster) -> None:
    article = Article.objects.create(title="a")
    render(FRAGMENT, article=article, counter=Counter())
    ttls = []
    for node in redis_cluster.nodes:
        with redis.Redis(host=node.host, port=node.port) as client:
            ttls += [client.ttl(key) for key in client.keys("*")]
    assert -1 in ttls, "tokens never expire"
    assert any(0 < ttl <= 60 for ttl in ttls), f"the entry expires after its timeout: {ttls}"


@pytest.mark.usefixtures("cluster_cache", "quiet")
def test_a_list_reads_and_stores_its_items_across_nodes(served: list[str]) -> None:
    counter = Counter()
    articles = [Article.objects.create(title=f"t{n}") for n in range(20)]
    first = render(LIST, articles=articles, counter=counter)
    assert render(LIST, articles=articles, counter=counter) == first
    assert served == ["miss"] * 20 + ["hit"] * 20

    articles[7].title = "new"
    articles[7].save()
    again = render(LIST, articles=[reloaded(a) for a in articles], counter=counter)
    assert again == first.replace("t7:8 ", "new:21 ")


@pytest.mark.usefixtures("cluster_cache", "quiet")
def test_grace_serves_the_stale_copy_once_swept() -> None:
    source = "{% cachesweeper article 60 grace=30 %}{{ counter.next }}{% endcachesweeper %}"
    counter = Counter()
    article = Article.objects.create(title="a")
    assert render(source, article=article, counter=counter) == "1"
    cachesweeper.invalidate_cache_for(article)
    article = reloaded(article)
    # This request takes the regeneration lock and renders; the lock is released after.
    assert render(source, article=article, counter=counter) == "2"
    assert render(source, article=article, counter=counter) == "2"


@pytest.mark.usefixtures("cluster_cache", "quiet")
def test_cached_pages_and_their_edge_tags() -> None:
    views.CALLS.clear()
    RecordingEdge.reset()
    client = Client()
    with override_settings(CACHESWEEPER={"EDGES": EDGES}, MIDDLEWARE=MIDDLEWARE):
        article = Article.objects.create(title="a")
        assert queue.purges.flush(5)
        RecordingEdge.reset()
        first = client.get("/articles/")
        assert client.get("/articles/").content == first.content == b"list 1"
        assert "testapp.article" in first["X-Test-Tags"]

        article.save()
        assert queue.purges.flush(5)
        assert "testapp.article" in RecordingEdge.names()
        assert client.get("/articles/").content == b"list 2"
    RecordingEdge.reset()


def test_a_node_restart_fails_open_then_hits_again(
    cluster_cache: RedisCluster, caplog: pytest.LogCaptureFixture, served: list[str]
) -> None:
    counter = Counter()
    articles = [Article.objects.create(title=f"t{n}") for n in range(6)]
    expected = " ".join(f"t{n}:{n + 1}" for n in range(6))
    assert render(LIST, articles=articles, counter=counter) == expected

    # The node that holds the first article's token: which node holds a list's keys
    # depends on the articles' primary keys, so a fixed node might hold none of them.
    node = node_holding(cluster_cache, token_key(f"testapp.article.{articles[0].pk}"))
    node.stop()
    with caplog.at_level(logging.WARNING, "cachesweeper"):
        down = render(LIST, articles=articles, counter=counter)
        page = Client().get("/articles/")
        # Tags on every node: the bump cannot land yet, and is queued for retry.
        cachesweeper.invalidate_tag(*[f"tag{n}" for n in range(12)])
    assert down == " ".join(f"t{n}:{n + 7}" for n in range(6)), "rendered, uncached"
    assert page.status_code == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "cachesweeper"]
    assert any("cache unreachable" in message for message in messages), messages
    assert any("will retry" in message for message in messages), messages
    assert retry_queue.queue.unconfirmed

    node.restart()  # its slots back, its keys gone
    cluster_cache.wait_until_ok()
    outages.forget()
    deadline = time.monotonic() + 10
    while retry_queue.queue.unconfirmed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not retry_queue.queue.unconfirmed, "the sweep landed once the node was back"
    deadline = time.monotonic() + 10
    served.clear()
    while True:
        render(LIST, articles=articles, counter=counter)
        render(LIST, articles=articles, counter=counter)
        if served[-6:] == ["hit"] * 6 or time.monotonic() > deadline:
            break
        served.clear()
    assert served[-6:] == ["hit"] * 6, served


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_single_server_cache_on_a_cluster_node_gets_one_clear_error_and_pages_still_render(
    redis_cluster: RedisCluster, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    outages.forget()
    entry = {"BACKEND": BACKENDS[backend], "LOCATION": redis_cluster.nodes[0].url}
    source = (
        "{% load cachesweeper %}"
        "{% cachesweeper_for a in articles 60 %}{{ a.title }} {% endcachesweeper_for %}"
    )
    with (
        override_settings(CACHES={"default": entry}),
        caplog.at_level(logging.WARNING, "cachesweeper"),
    ):
        articles = [Article.objects.create(title=f"t{n}") for n in range(6)]
        for _ in range(3):
            assert render(source, articles=articles) == " ".join(f"t{n}" for n in range(6))
    messages = [record.getMessage() for record in caplog.records if record.name == "cachesweeper"]
    assert messages, "the cluster's answers must be reported"
    assert any("node of a Redis Cluster" in message for message in messages), messages
    assert not any("cache unreachable" in message for message in messages), messages


def test_a_cluster_that_is_down_is_an_outage_not_a_wrong_backend(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """django-valkey raises ``ClusterDownError`` while a node is missing past the node timeout."""
    from django_valkey.exceptions import ConnectionInterrupted
    from valkey.exceptions import ClusterDownError, MovedError

    outages.forget()
    try:
        raise ConnectionInterrupted(connection=None) from ClusterDownError("The cluster is down")
    except ConnectionInterrupted as error:
        down = error
    with caplog.at_level(logging.WARNING, "cachesweeper"):
        outages.report("'default'", "rendering uncached", down)
        outages.report("'other'", "rendering uncached", MovedError("3999 127.0.0.1:6381"))
    first, second = (record.getMessage() for record in caplog.records)
    assert "cache unreachable ('default')" in first
    assert "ClusterDownError" in first
    assert "node of a Redis Cluster" in second


@pytest.mark.usefixtures("cluster_cache", "quiet")
def test_the_wsgi_page_cache_on_the_cluster_cache_object() -> None:
    """Given the cache object, not its alias: django-valkey's does not subclass BaseCache."""
    from wsgiref.util import setup_testing_defaults

    from cachesweeper.wsgi import PageCacheMiddleware

    served: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        served.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"page {len(served)}".encode()]

    middleware = PageCacheMiddleware(app, [("/", None, 0)], caches["default"], local_copies=0)

    def get() -> bytes:
        environ: dict[str, Any] = {"PATH_INFO": "/news/", "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        return b"".join(middleware(environ, lambda status, headers, exc_info=None: None))

    assert get() == get() == b"page 1"
    assert served == ["/news/"]


def node_holding(cluster: RedisCluster, key: str) -> RedisServer:
    """The node of ``cluster`` whose slots hold cache key ``key`` (before ``make_key``)."""
    client: Any = caches["default"].client  # type: ignore[attr-defined]
    made = str(client.make_key(key))
    port = client.get_client(write=True).get_node_from_key(made).port
    [node] = [node for node in cluster.nodes if node.port == port]
    return node


def test_a_sweep_a_down_node_missed_is_replayed_from_the_journal(
    cluster_cache: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep committed while the node of its token is down stays in the journal, and
    the relay replays it once the node is back: its old token is never trusted again.

    The node comes back with what it held (saved before it stopped), as a node with
    persistence or a network partition would, so the old token and entry are there to
    be served. The process that swept "dies" after the failed bump: its retry queue
    never gets the names, only the journal has them.
    """
    counter = Counter()
    article = Article.objects.create(title="old")
    assert render(FRAGMENT, article=article, counter=counter) == "old 1"
    assert render(FRAGMENT, article=article, counter=counter) == "old 1"
    name = f"testapp.article.{article.pk}"
    node = node_holding(cluster_cache, tokens.token_key(name))
    with redis.Redis(host=node.host, port=node.port) as direct:
        direct.save()  # comes back with the old token
    node.stop()
    monkeypatch.setattr(retry_queue.queue, "add", lambda *args, **kwargs: None)
    try:
        with transaction.atomic():
            Article.objects.filter(pk=article.pk).update(title="new")
            cachesweeper.invalidate_cache_for(article)
        [row] = JournaledSweep.objects.all()
        assert name in json.loads(row.names)
        assert relay.replay("default", older_than=0) == 0, "the node is still down"

        node.restart()
        cluster_cache.wait_until_ok()
    finally:
        (node.workdir / "dump.rdb").unlink(missing_ok=True)  # later restarts start empty
    outages.forget()
    assert render(FRAGMENT, article=reloaded(article), counter=counter) == "old 1", (
        "without the journal, the old token is trusted"
    )
    JournaledSweep.objects.update(claimed_until=0)  # the failed replay's claim runs out
    assert relay.replay("default", older_than=0) == 1
    assert not JournaledSweep.objects.exists()
    assert render(FRAGMENT, article=reloaded(article), counter=counter) == "new 2"
    assert render(FRAGMENT, article=reloaded(article), counter=counter) == "new 2"
