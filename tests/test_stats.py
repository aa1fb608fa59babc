"""In-process counters: hits, misses, stale serves, sweeps, fan-out and purges."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.db import transaction
from django.test import Client, override_settings

import cachesweeper
from cachesweeper import signals, stats
from cachesweeper.edges import queue
from tests.edges.recording import RecordingEdge
from tests.helpers import render
from tests.testapp import views
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

SOURCE = "{% cachesweeper article 60 grace=30 %}{{ article.title }}{% endcachesweeper %}"
EDGES = [{"BACKEND": "tests.edges.recording.RecordingEdge"}]


@pytest.fixture(autouse=True)
def _zero() -> Iterator[None]:
    stats.reset()
    RecordingEdge.reset()
    views.CALLS.clear()
    yield
    stats.reset()


def counts(*names: str) -> dict[str, Any]:
    snapshot = stats.snapshot()
    return {name: snapshot[name] for name in names}


def test_a_fresh_process_or_reset_counts_nothing() -> None:
    snapshot = stats.snapshot()
    assert {key: snapshot[key] for key in snapshot if key not in ("since", "process")} == {
        "hits": 0,
        "misses": 0,
        "stale": 0,
        "hit_ratio": None,
        "sweeps": 0,
        "names_swept": 0,
        "largest_sweep": 0,
        "purges_queued": 0,
        "purges_delivered": 0,
        "purges_failed": 0,
        "purges_widened": 0,
        "purges_pending": 0,
    }


def test_fragment_misses_and_hits_are_counted() -> None:
    article = Article.objects.create(title="a")
    stats.reset()

    render(SOURCE, article=article)
    render(SOURCE, article=article)
    render(SOURCE, article=article)

    assert counts("hits", "misses", "stale", "hit_ratio") == {
        "hits": 2,
        "misses": 1,
        "stale": 0,
        "hit_ratio": round(2 / 3, 4),
    }


def test_a_list_counts_one_per_item() -> None:
    articles = [Article.objects.create(title=str(i)) for i in range(3)]
    source = '{% cachesweeper_for a in articles 60 "row" %}{{ a.title }}{% endcachesweeper_for %}'
    stats.reset()

    render(source, articles=articles)
    render(source, articles=articles)

    assert counts("hits", "misses") == {"hits": 3, "misses": 3}


def test_stale_serves_are_counted() -> None:
    article = Article.objects.create(title="a")
    keys: list[str] = []

    def remember(sender: Any, key: str, **kwargs: Any) -> None:
        keys.append(key)

    signals.fragment_miss.connect(remember)
    try:
        render(SOURCE, article=article)
    finally:
        signals.fragment_miss.disconnect(remember)
    cachesweeper.invalidate_cache_for(article)
    # Another request is re-rendering (it holds the lock): this one gets the stale copy.
    assert caches["default"].add(f"{keys[0]}:lock", 1, 30)
    stats.reset()

    assert render(SOURCE, article=article) == "a"

    assert counts("hits", "misses", "stale", "hit_ratio") == {
        "hits": 0,
        "misses": 0,
        "stale": 1,
        "hit_ratio": 1.0,
    }


def test_pages_are_counted_like_fragments(client: Client) -> None:
    client.get("/plain/")
    client.get("/plain/")

    assert counts("hits", "misses") == {"hits": 1, "misses": 1}
    assert views.CALLS["plain"] == 1


def test_sweeps_count_calls_names_and_the_largest_fan_out() -> None:
    cachesweeper.invalidate_tag("a")
    cachesweeper.invalidate_tag("b", "c", "d")
    cachesweeper.invalidate_tag("e", "f")

    assert counts("sweeps", "names_swept", "largest_sweep") == {
        "sweeps": 3,
        "names_swept": 6,
        "largest_sweep": 3,
    }


def test_a_transaction_is_one_sweep_whatever_it_saved() -> None:
    article = Article.objects.create(title="a")
    stats.reset()

    with transaction.atomic():
        Comment.objects.create(article=article, text="one")
        Comment.objects.create(article=article, text="two")
        assert counts("sweeps") == {"sweeps": 0}  # nothing before the commit

    # Two comments, their model and the comments of their article; the article they
    # touch, its model and the articles of its author: one bump.
    assert counts("sweeps", "names_swept", "largest_sweep") == {
        "sweeps": 1,
        "names_swept": 7,
        "largest_sweep": 7,
    }


def test_purges_are_read_from_the_edge_queue() -> None:
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        cachesweeper.invalidate_tag("frontpage", "sidebar")
        assert queue.purges.flush(5)

        snapshot = stats.snapshot()
        assert snapshot["purges_queued"] == 2
        assert snapshot["purges_delivered"] == 2
        assert snapshot["purges_failed"] == 0
        assert snapshot["purges_pending"] == 0
        assert RecordingEdge.names() == {"frontpage", "sidebar"}

        stats.reset()  # the queue keeps its own totals; the snapshot starts again
        assert counts("purges_queued", "purges_delivered") == {
            "purges_queued": 0,
            "purges_delivered": 0,
        }


def test_failed_purge_attempts_are_counted() -> None:
    RecordingEdge.reset(failures=1)
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        cachesweeper.invalidate_tag("frontpage")
        assert queue.purges.flush(10)

    assert counts("purges_failed", "purges_delivered") == {
        "purges_failed": 1,
        "purges_delivered": 1,
    }


def test_purges_failed_counts_failed_calls_not_names_times_calls() -> None:
    RecordingEdge.reset(failures=2)
    names = ["a", "b", "c"]  # one batch of RecordingEdge (max_batch 3)
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        cachesweeper.invalidate_tag(*names)
        assert queue.purges.flush(10)

    assert RecordingEdge.attempts == 3  # one batch: failed twice, then delivered
    assert counts("purges_queued", "purges_failed", "purges_delivered") == {
        "purges_queued": 3,
        "purges_failed": 2,
        "purges_delivered": 3,
    }


def test_reset_starts_every_counter_again() -> None:
    article = Article.objects.create(title="a")
    render(SOURCE, article=article)
    cachesweeper.invalidate_tag("a", "b")
    before = stats.snapshot()["since"]

    stats.reset()

    assert counts("hits", "misses", "sweeps", "names_swept", "largest_sweep") == {
        "hits": 0,
        "misses": 0,
        "sweeps": 0,
        "names_swept": 0,
        "largest_sweep": 0,
    }
    assert stats.snapshot()["since"] >= before
