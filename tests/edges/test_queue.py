"""The purge queue: batched, retried with backoff, widened when full, never dropped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

import cachesweeper
from cachesweeper.edges import queue
from cachesweeper.edges.loading import configured
from cachesweeper.edges.queue import PurgeQueue
from tests.edges.recording import RecordingEdge
from tests.testapp.models import Article

EDGES = [{"BACKEND": "tests.edges.recording.RecordingEdge"}]


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(queue, "FIRST_DELAY", 0.05)
    RecordingEdge.reset()
    yield
    RecordingEdge.reset()


def test_batches_respect_the_edge_limit() -> None:
    purges = PurgeQueue()
    edge = RecordingEdge()
    purges.put([edge], [f"tag{i}" for i in range(7)])
    assert purges.flush(5)
    assert [len(batch.names) for batch in RecordingEdge.received] == [3, 3, 1]
    assert purges.stats.delivered == 7


def test_failed_purges_are_retried_until_delivered() -> None:
    RecordingEdge.reset(failures=3)
    purges = PurgeQueue()
    purges.put([RecordingEdge()], ["a", "b"])
    assert purges.flush(10)
    assert RecordingEdge.names() == {"a", "b"}
    assert RecordingEdge.attempts == 4
    assert purges.stats.failed == 6


def test_a_full_queue_widens_to_models_then_to_everything() -> None:
    RecordingEdge.reset(failures=10**6)  # unreachable
    purges = PurgeQueue(limit=5)
    edge = RecordingEdge()
    purges.put([edge], [f"blog.article.{i}" for i in range(4)] + ["blog.comment.1", "tag"])
    purges.put([edge], [f"blog.article.{i}" for i in range(10, 40)])
    assert purges.stats.widened >= 1
    RecordingEdge.reset()
    assert purges.flush(5)
    assert RecordingEdge.names() == {"blog.article.*", "blog.comment.*", "tag"}

    RecordingEdge.reset(failures=10**6)
    purges.put([edge], [f"tag{i}" for i in range(10)])
    RecordingEdge.reset()
    assert purges.flush(5)
    assert [batch.everything for batch in RecordingEdge.received] == [True]


@pytest.mark.django_db(transaction=True)
def test_saving_a_model_purges_its_names_and_url_after_commit() -> None:
    with override_settings(CACHESWEEPER={"EDGES": EDGES}, ALLOWED_HOSTS=["example.com"]):
        article = Article.objects.create(title="a")
        assert queue.purges.flush(5)
        assert {f"testapp.article.{article.pk}", "testapp.article"} <= RecordingEdge.names()
        assert (None, f"/article/{article.pk}/") in RecordingEdge.urls()


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_edge_never_breaks_a_save() -> None:
    RecordingEdge.reset(failures=10**6)
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        Article.objects.create(title="a")  # does not raise
        assert not queue.purges.flush(0.3)
        RecordingEdge.reset()
        assert queue.purges.flush(5)
        assert "testapp.article" in RecordingEdge.names()


def test_configured_edges_are_built_once_per_setting() -> None:
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        assert configured() is configured()
        assert isinstance(configured()[0], RecordingEdge)


def test_invalidate_tag_reaches_the_edges() -> None:
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        cachesweeper.invalidate_tag("frontpage")
        assert queue.purges.flush(5)
    assert RecordingEdge.names() == {"frontpage"}


def test_pending_purges_are_flushed_at_exit(tmp_path: object) -> None:
    """A short-lived process (a management command, a worker) still delivers its purges."""
    import subprocess
    import sys
    import textwrap
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PURGE(self) -> None:
            received.append(self.headers["X-Names"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    script = textwrap.dedent(
        f"""
        import http.client
        import django
        from django.conf import settings
        from cachesweeper.edges.base import Edge

        class HttpEdge(Edge):
            def purge(self, batch):
                port = {server.server_port}
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("PURGE", "/", headers={{"X-Names": " ".join(batch.names)}})
                assert connection.getresponse().status == 200

        settings.configure(
            CACHESWEEPER={{"EDGES": [{{"BACKEND": "__main__.HttpEdge"}}]}},
            CACHES={{"default": {{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}}},
        )
        django.setup()
        import cachesweeper
        cachesweeper.invalidate_tag("goodbye")
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert received == ["goodbye"], result.stderr
    finally:
        server.shutdown()


def test_a_purge_that_can_never_be_sent_widens_to_everything() -> None:
    class Picky(RecordingEdge):
        def purge(self, batch: queue.PurgeBatch) -> None:
            if batch.names:
                raise ValueError("not a header-safe dependency name")
            super().purge(batch)

    purges = PurgeQueue()
    purges.put([Picky()], ["bad name"])
    assert purges.flush(5)
    assert [batch.everything for batch in RecordingEdge.received] == [True]
