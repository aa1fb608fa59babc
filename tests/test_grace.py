"""Grace: after a sweep or expiry, one request re-renders while the others get the stale copy."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

import cachesweeper
from cachesweeper.entries import slot
from tests.helpers import missed_keys, reloaded, render, ttl_of
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

SOURCE = "{% cachesweeper article ttl grace=grace %}{{ probe.render }}{% endcachesweeper %}"


class Probe:
    """Counts renders; can block a render until released, or make it raise."""

    def __init__(self) -> None:
        self.renders = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def render(self) -> str:
        self.renders += 1
        self.started.set()
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("the database is on fire")
        return f"v{self.renders}"


def page(article: Article, probe: Probe, ttl: int = 60, grace: int = 30) -> str:
    return render(SOURCE, article=article, probe=probe, ttl=ttl, grace=grace)


@pytest.mark.parametrize("trigger", ["sweep", "expiry"])
def test_one_request_rerenders_while_others_get_the_stale_copy(trigger: str) -> None:
    article = Article.objects.create(title="a")
    probe = Probe()
    ttl = 1 if trigger == "expiry" else 60
    assert page(article, probe, ttl) == "v1"
    if trigger == "sweep":
        cachesweeper.invalidate_cache_for(article)
        article = reloaded(article)
    else:
        time.sleep(1.2)

    probe.release.clear()
    probe.started.clear()
    results: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: results.update(slow=page(article, probe, ttl)))
    slow.start()
    assert probe.started.wait(5)
    try:
        # The slow request holds the lock: everyone else gets the stale copy at once.
        assert [page(article, probe, ttl) for _ in range(5)] == ["v1"] * 5
    finally:
        probe.release.set()
        slow.join(10)

    assert results["slow"] == "v2"
    assert probe.renders == 2
    assert page(article, probe, ttl) == "v2"


def test_a_failed_rerender_serves_stale_and_keeps_the_good_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    article = Article.objects.create(title="a")
    probe = Probe()
    assert page(article, probe, grace=2) == "v1"
    cachesweeper.invalidate_cache_for(article)

    probe.fail = True
    assert page(article, probe, grace=2) == "v1"
    assert "re-render failed" in caplog.text
    # The lock was released: the next request tries again (and fails again).
    assert page(article, probe, grace=2) == "v1"
    assert probe.renders == 3

    # Grace is counted from the first failure: after it, the error shows.
    time.sleep(2.2)
    with pytest.raises(RuntimeError, match="on fire"):
        page(article, probe, grace=2)

    probe.fail = False
    assert page(article, probe, grace=2) == "v5"


def test_without_grace_a_swept_fragment_is_never_served_stale() -> None:
    article = Article.objects.create(title="a")
    probe = Probe()
    assert page(article, probe, grace=0) == "v1"
    cachesweeper.invalidate_cache_for(article)
    probe.fail = True
    with pytest.raises(RuntimeError):
        page(article, probe, grace=0)


def rerender_in_background(run: Any, probe: Probe) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``run()`` in a thread and return once its render is under way (and blocked)."""
    probe.release.clear()
    probe.started.clear()
    results: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: results.update(value=run()))
    thread.start()
    assert probe.started.wait(5)
    return thread, results


def test_the_regeneration_lock_expires_after_a_few_seconds(cache_backend: str) -> None:
    """Pitfall: a lock whose timeout is an absolute timestamp would hold for decades."""
    article = Article.objects.create(title="a")
    probe = Probe()
    with missed_keys() as keys:
        assert page(article, probe, grace=30) == "v1"
    (key,) = keys
    cachesweeper.invalidate_cache_for(article)

    slow, results = rerender_in_background(lambda: page(reloaded(article), probe), probe)
    try:
        lock = slot(key, (), None).lock_key
        assert caches["default"].get(lock) is not None  # held while it renders
        ttl = ttl_of(cache_backend, lock)
        assert ttl is not None and 0 < ttl <= 30
    finally:
        probe.release.set()
        slow.join(10)
    assert results["value"] == "v2"
    assert caches["default"].get(lock) is None  # released once stored


def test_the_grace_setting_applies_when_the_tag_gives_none() -> None:
    article = Article.objects.create(title="a")
    probe = Probe()
    source = "{% cachesweeper article 60 %}{{ probe.render }}{% endcachesweeper %}"
    with override_settings(CACHESWEEPER={"GRACE": 30}):
        assert render(source, article=article, probe=probe) == "v1"
        cachesweeper.invalidate_cache_for(article)
        article = reloaded(article)

        slow, results = rerender_in_background(
            lambda: render(source, article=article, probe=probe), probe
        )
        try:
            assert [render(source, article=article, probe=probe) for _ in range(3)] == ["v1"] * 3
        finally:
            probe.release.set()
            slow.join(10)
        assert results["value"] == "v2"
        assert probe.renders == 2


def test_cachesweeper_for_serves_stale_items_while_one_request_rerenders() -> None:
    article = Article.objects.create(title="a")
    created = [Comment.objects.create(article=article, text=f"c{i}") for i in range(3)]
    probes = [Probe() for _ in created]
    source = (
        "{% cachesweeper_for comment in comments 60 grace=30 %}"
        "{{ comment.text }}:{{ comment.probe.render }} {% endcachesweeper_for %}"
    )

    def page_of(comments: list[Comment]) -> str:
        for comment, probe in zip(comments, probes, strict=True):
            comment.probe = probe  # type: ignore[attr-defined]
        return render(source, comments=comments)

    comments = [reloaded(comment) for comment in created]
    assert page_of(comments) == "c0:v1 c1:v1 c2:v1"
    cachesweeper.invalidate_cache_for(comments[1])
    comments = [reloaded(comment) for comment in created]

    slow, results = rerender_in_background(lambda: page_of(comments), probes[1])
    try:
        # Item 1 is stale and locked: the others get its stale copy at once; 0 and 2 hit.
        assert [page_of(comments) for _ in range(3)] == ["c0:v1 c1:v1 c2:v1"] * 3
    finally:
        probes[1].release.set()
        slow.join(10)
    assert results["value"] == "c0:v1 c1:v2 c2:v1"
    assert [probe.renders for probe in probes] == [1, 2, 1]
    assert page_of(comments) == "c0:v1 c1:v2 c2:v1"
