"""Signals report hits, misses, stale serves and sweeps with their dependency names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import cachesweeper
from cachesweeper import signals
from tests.helpers import render
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]


@pytest.fixture
def received() -> Iterator[list[tuple[str, list[str]]]]:
    events: list[tuple[str, list[str]]] = []
    receivers = {}
    for name in ("fragment_hit", "fragment_miss", "fragment_stale", "swept"):

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
        ("swept", [name]),
    ]
