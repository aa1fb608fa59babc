"""The purge queue: batched, retried with backoff, widened when full, never dropped."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

import cachesweeper
from cachesweeper import signals
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
    assert purges.stats.failed == 3  # failed calls, not names times calls


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


# Backoff, logging and signals


class TimedEdge(RecordingEdge):
    """Remembers when each delivery was attempted."""

    times: list[float] = []

    def purge(self, batch: queue.PurgeBatch) -> None:
        self.times.append(time.monotonic())
        super().purge(batch)


def wait_for_attempts(edge: type[RecordingEdge], count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while edge.attempts < count:
        assert time.monotonic() < deadline, f"only {edge.attempts} attempts"
        time.sleep(0.01)


def test_retries_back_off_exponentially_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue, "FIRST_DELAY", 0.05)
    monkeypatch.setattr(queue, "MAX_DELAY", 0.2)
    TimedEdge.reset(failures=7)
    TimedEdge.times = []
    edge = TimedEdge()
    purges = PurgeQueue()
    purges.put([edge], ["frontpage"])
    wait_for_attempts(TimedEdge, 8)  # seven failures, then the delivery
    intervals = [later - earlier for earlier, later in itertools.pairwise(edge.times)]
    expected = [0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2]  # doubling, then capped
    waited = zip(intervals, expected, strict=True)
    assert all(got >= want * 0.95 for got, want in waited), intervals
    assert max(intervals) < 1.0, intervals  # without the cap the last wait would be 3.2 s
    assert RecordingEdge.names() == {"frontpage"}


def test_each_failed_delivery_is_logged_as_an_error_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    RecordingEdge.reset(failures=2)
    purges = PurgeQueue()
    with caplog.at_level(logging.ERROR, logger="cachesweeper"):
        purges.put([RecordingEdge()], ["a", "b"], urls=["/x/"], host="example.com")
        assert purges.flush(5)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR] * 2
    first = failures[0].getMessage()
    assert "purge of 2 names and 0 URLs on RecordingEdge failed" in first
    assert "edge unreachable" in first and "will retry" in first
    assert purges.stats.failed == 2 and purges.stats.delivered == 3


def test_a_purge_that_cannot_be_sent_is_logged_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Refusing(RecordingEdge):
        def purge(self, batch: queue.PurgeBatch) -> None:
            raise ValueError("not a header-safe dependency name")

    purges = PurgeQueue()
    with caplog.at_level(logging.ERROR, logger="cachesweeper"):
        purges.put([Refusing()], ["a", "b", "c"])
        assert purges.flush(5)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("3 names and 0 URLs cannot be purged on Refusing" in m for m in messages)
    assert any("Refusing cannot purge everything" in m for m in messages)  # widened, refused too
    assert purges.stats.failed == 2  # the batch of three names, then the purge of everything


def test_purge_signals_carry_the_dependencies() -> None:
    sent: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []

    def on_sent(sender: type, **kwargs: Any) -> None:
        sent.append({"sender": sender, **kwargs})

    def on_failed(sender: type, **kwargs: Any) -> None:
        failed.append({"sender": sender, **kwargs})

    signals.purge_sent.connect(on_sent)
    signals.purge_failed.connect(on_failed)
    try:
        RecordingEdge.reset(failures=1)
        edge = RecordingEdge()
        purges = PurgeQueue()
        purges.put([edge], ["blog.article.1", "frontpage"])
        assert purges.flush(5)
    finally:
        signals.purge_sent.disconnect(on_sent)
        signals.purge_failed.disconnect(on_failed)
    [failure] = failed
    assert failure["sender"] is RecordingEdge and failure["edge"] is edge
    assert failure["dependencies"] == ["blog.article.1", "frontpage"]
    assert isinstance(failure["error"], ConnectionRefusedError)
    [success] = sent
    assert success["edge"] is edge and success["dependencies"] == ["blog.article.1", "frontpage"]


# A dead edge never hangs shutdown


class HungEdge(RecordingEdge):
    """An edge that accepts the purge and never answers."""

    release = threading.Event()

    def purge(self, batch: queue.PurgeBatch) -> None:
        self.release.wait(60)


@pytest.fixture
def hung_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[PurgeQueue]:
    purges = PurgeQueue()
    monkeypatch.setattr(queue, "purges", purges)
    HungEdge.release.clear()
    yield purges
    HungEdge.release.set()  # let the worker go


def test_flush_gives_up_at_its_deadline_when_the_edge_hangs(hung_queue: PurgeQueue) -> None:
    hung_queue.put([HungEdge()], ["frontpage"])
    started = time.monotonic()
    assert hung_queue.flush(timeout=0.3) is False
    assert time.monotonic() - started < 5  # the edge never answers: without a deadline, forever
    assert hung_queue.pending() == 1  # the batch in flight is still counted


def test_the_exit_flush_is_bounded_and_says_what_is_lost(
    hung_queue: PurgeQueue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(queue, "EXIT_TIMEOUT", 0.3)
    edge = HungEdge()
    hung_queue.put([edge], ["a"])
    hung_queue.put([edge], ["b", "c"])  # queued behind the batch that hangs
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="cachesweeper"):
        queue.flush_at_exit()
    assert time.monotonic() - started < 5  # the edge never answers: without a deadline, forever
    assert "purges could not be delivered before exit" in caplog.text
    assert any(r.getMessage().startswith("cachesweeper: 3 purges") for r in caplog.records)


def test_a_process_exits_within_the_limit_when_its_edge_hangs() -> None:
    """The real interpreter exit, with a purge stuck in a daemon thread."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import threading
        import django
        from django.conf import settings
        from cachesweeper.edges.base import Edge

        class HungEdge(Edge):
            def purge(self, batch):
                threading.Event().wait(600)

        settings.configure(
            CACHESWEEPER={"EDGES": [{"BACKEND": "__main__.HungEdge"}]},
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        )
        django.setup()
        import cachesweeper
        from cachesweeper.edges import queue
        queue.EXIT_TIMEOUT = 1.0
        cachesweeper.invalidate_tag("stuck")
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "1 purges could not be delivered before exit" in result.stderr
    assert time.monotonic() - started < 20  # 1 s of flushing plus interpreter start-up
