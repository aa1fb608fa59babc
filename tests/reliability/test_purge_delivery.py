"""Purges reach the edge even when it is unreachable for a while, and are never dropped.

* A Varnish edge (the real backend, over HTTP, against a local recording
  server) refuses connections for 10 s while models are saved: once it is
  back, the purge worker delivers every name and URL swept meanwhile, on its
  own, without ``flush()``.
* A full purge queue widens (instances to their model's tag, then a purge
  of everything) instead of dropping: every swept name is still covered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

import cachesweeper
from cachesweeper import signals
from cachesweeper.edges import queue
from cachesweeper.edges.base import any_instance
from tests.edges.recording import RecordingEdge
from tests.reliability.figures import record
from tests.servers import LOOPBACK, free_port
from tests.testapp.models import Article, Comment

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC_HOST = "www.example.test"


class PurgeRecorder:
    """An HTTP server recording PURGE requests; ``stop()`` refuses connections on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.names: set[str] = set()
        self.urls: set[tuple[str, str]] = set()
        self.everything = 0
        self.requests = 0
        self.httpd: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PURGE(self) -> None:
                with recorder.lock:
                    recorder.requests += 1
                    if self.headers.get("X-Purge-All"):
                        recorder.everything += 1
                    elif self.headers.get("xkey-purge") is not None:
                        recorder.names.update(self.headers["xkey-purge"].split(" "))
                    else:
                        recorder.urls.add((self.headers.get("Host", ""), self.path))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture
def recorder() -> Iterator[PurgeRecorder]:
    server = PurgeRecorder()
    yield server
    server.stop()


@pytest.fixture
def own_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[queue.PurgeQueue]:
    """A purge queue of this test's own (sweeps look ``queue.purges`` up at call time)."""
    monkeypatch.setattr(queue, "FIRST_DELAY", 0.2)
    monkeypatch.setattr(queue, "MAX_DELAY", 1.0)
    purges = queue.PurgeQueue()
    monkeypatch.setattr(queue, "purges", purges)
    yield purges


class Swept:
    """Every name the sweeps bumped (from the ``swept`` signal)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __call__(self, dependencies: list[str], **kwargs: Any) -> None:
        self.names.update(dependencies)

    def __enter__(self) -> Swept:
        signals.swept.connect(self, weak=False)
        return self

    def __exit__(self, *exc: object) -> None:
        signals.swept.disconnect(self)


def save_some(articles: list[Article], round_: int) -> None:
    """One round of writes: an article, a comment (touching its article), a tag."""
    article = articles[round_ % len(articles)]
    article.title = f"t{round_}"
    article.save()
    Comment.objects.create(article=articles[(round_ * 7) % len(articles)], text=str(round_))
    cachesweeper.invalidate_tag(f"edge-tag-{round_ % 13}")


def test_every_purge_is_delivered_after_a_10_second_edge_outage(
    recorder: PurgeRecorder, own_queue: queue.PurgeQueue
) -> None:
    edges = [
        {
            "BACKEND": "cachesweeper.edges.Varnish",
            "OPTIONS": {"servers": [recorder.url], "host": PUBLIC_HOST},
        }
    ]
    with override_settings(CACHESWEEPER={"EDGES": edges}), Swept() as swept:
        articles = [Article.objects.create(title=f"a{index}") for index in range(40)]
        assert own_queue.flush(10)
        recorder.stop()
        down = time.monotonic()
        rounds = 0
        while time.monotonic() - down < 10.0:
            save_some(articles, rounds)
            rounds += 1
            time.sleep(0.01)
        pending_at_return = own_queue.pending()
        recorder.start()
        back = time.monotonic()
        while own_queue.pending():  # the worker, on its own
            assert time.monotonic() - back < 10, "the worker did not deliver after the outage"
            time.sleep(0.01)
        delivered_after = time.monotonic() - back
        assert own_queue.flush(5)

    expected_urls = {(PUBLIC_HOST, f"/article/{article.pk}/") for article in articles}
    missing_names = swept.names - recorder.names
    missing_urls = expected_urls - recorder.urls
    record(
        "purges[Varnish edge down 10 s]",
        sweeps_during_outage=rounds * 3,
        names_swept=len(swept.names),
        urls_swept=len(expected_urls),
        pending_at_return=pending_at_return,
        failed_attempts=own_queue.stats.failed,
        delivered_after_return_s=round(delivered_after, 2),
        missing=len(missing_names) + len(missing_urls),
    )
    assert rounds >= 100 and pending_at_return > 0 and own_queue.stats.failed > 0
    assert recorder.everything == 0  # nothing had to be widened
    assert missing_names == set()
    assert missing_urls == set()


def covered(name: str, purged: set[str], everything: bool) -> bool:
    return everything or name in purged or any_instance(name) in purged


@pytest.mark.parametrize(("limit", "widened_to"), [(400, "models"), (50, "everything")])
def test_a_full_queue_widens_instead_of_dropping(
    own_queue: queue.PurgeQueue, limit: int, widened_to: str
) -> None:
    own_queue.limit = limit
    RecordingEdge.reset(failures=10**9)  # unreachable until reset
    edges = [{"BACKEND": "tests.edges.recording.RecordingEdge"}]
    try:
        with override_settings(CACHESWEEPER={"EDGES": edges}, ALLOWED_HOSTS=[PUBLIC_HOST]):
            with Swept() as swept:
                articles = [Article.objects.create(title=f"a{index}") for index in range(300)]
                for round_ in range(60):
                    save_some(articles, round_)
            widened = own_queue.stats.widened
            RecordingEdge.reset()  # reachable again
            assert own_queue.flush(30)
    finally:
        received = list(RecordingEdge.received)
        RecordingEdge.reset()

    everything = any(batch.everything for batch in received)
    purged = {name for batch in received for name in batch.names}
    urls = {path for batch in received for path in batch.urls}
    uncovered = [name for name in swept.names if not covered(name, purged, everything)]
    uncovered_urls = (
        []
        if everything
        else [
            f"/article/{article.pk}/"
            for article in articles
            if f"/article/{article.pk}/" not in urls
        ]
    )
    record(
        f"purges[queue limit {limit}, edge down]",
        names_swept=len(swept.names),
        times_widened=widened,
        widened_to="everything" if everything else "models",
        batches_delivered=len(received),
        uncovered=len(uncovered) + len(uncovered_urls),
    )
    assert widened > 0
    assert ("everything" if everything else "models") == widened_to
    assert uncovered == [] and uncovered_urls == []
