"""Signals report hits, misses, stale serves, sweeps and edge purges, with dependency names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

import cachesweeper
from cachesweeper import signals
from tests.helpers import render
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]


@pytest.fixture
def received() -> Iterator[list[tuple[str, list[str]]]]:
    events: list[tuple[str, list[str]]] = []
    receivers = {}
    names = ("fragment_hit", "fragment_miss", "fragment_stale", "swept")
    for name in (*names, "page_hit", "page_miss", "page_stale"):

        def receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            events.append((name, kwargs["dependencies"]))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield events
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def test_miss_hit_and_sweep_are_signalled(received: list[tuple[str, list[str]]]) -> None:
    article = Article.objects.create(title="a")
    name = f"testapp.article.{article.pk}"
    received.clear()
    source = "{% cachesweeper article 60 %}x{% endcachesweeper %}"

    render(source, article=article)
    render(source, article=article)
    cachesweeper.invalidate_cache_for(article)

    assert received == [
        ("fragment_miss", [name]),
        ("fragment_hit", [name]),
        ("swept", [name, "testapp.article.author="]),  # and the lists it is in (no author)
    ]


def test_a_cached_page_sends_page_signals_and_its_fragment_its_own(
    received: list[tuple[str, list[str]]], client: Client
) -> None:
    comment = Comment.objects.create(article=Article.objects.create(title="a"), text="hi")
    name = f"testapp.comment.{comment.pk}"
    received.clear()

    client.get(f"/fragment/{comment.pk}/")
    client.get(f"/fragment/{comment.pk}/")

    assert received == [
        ("page_miss", []),
        ("fragment_miss", [name]),
        ("page_hit", [name]),  # the page depends on what its fragment showed
    ]


EDGES = [{"BACKEND": "tests.edges.recording.RecordingEdge"}]


@pytest.fixture
def purge_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """``purge_sent`` / ``purge_failed`` as a receiver gets them, with fast retries."""
    from cachesweeper.edges import queue
    from tests.edges.recording import RecordingEdge

    monkeypatch.setattr(queue, "FIRST_DELAY", 0.05)
    RecordingEdge.reset()
    events: list[dict[str, Any]] = []

    def sent(sender: Any, **kwargs: Any) -> None:
        events.append({**kwargs, "which": "purge_sent", "sender": sender})

    def failed(sender: Any, **kwargs: Any) -> None:
        events.append({**kwargs, "which": "purge_failed", "sender": sender})

    signals.purge_sent.connect(sent)
    signals.purge_failed.connect(failed)
    yield events
    signals.purge_sent.disconnect(sent)
    signals.purge_failed.disconnect(failed)
    RecordingEdge.reset()


def test_a_delivered_purge_is_signalled_with_its_edge_and_names(
    purge_events: list[dict[str, Any]],
) -> None:
    from cachesweeper.edges.queue import purges
    from tests.edges.recording import RecordingEdge

    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        cachesweeper.invalidate_tag("frontpage")
        assert purges.flush(5)

    [event] = purge_events
    assert event["which"] == "purge_sent" and event["sender"] is RecordingEdge
    assert isinstance(event["edge"], RecordingEdge)
    assert event["dependencies"] == ["frontpage"]


def test_a_failed_purge_is_signalled_with_the_error_then_sent_on_retry(
    purge_events: list[dict[str, Any]],
) -> None:
    from cachesweeper.edges.queue import purges
    from tests.edges.recording import RecordingEdge

    RecordingEdge.reset(failures=1)
    with override_settings(CACHESWEEPER={"EDGES": EDGES}):
        cachesweeper.invalidate_tag("frontpage")
        assert purges.flush(5)

    assert [event["which"] for event in purge_events] == ["purge_failed", "purge_sent"]
    failed = purge_events[0]
    assert isinstance(failed["error"], ConnectionRefusedError)
    assert failed["dependencies"] == ["frontpage"]
    assert isinstance(failed["edge"], RecordingEdge)
