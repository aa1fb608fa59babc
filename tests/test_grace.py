"""Grace: after a sweep or expiry, one request re-renders while the others get the stale copy."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import cachesweeper
from tests.helpers import reloaded, render
from tests.testapp.models import Article

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
