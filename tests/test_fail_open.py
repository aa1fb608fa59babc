"""A cache that is down never breaks a page, and never loses a sweep."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import caches
from django.test import override_settings

import cachesweeper
from cachesweeper import retries
from cachesweeper.tokens import token_key
from tests.helpers import COMMENT, Counter, render
from tests.servers import cache_settings
from tests.testapp.models import Article, Comment

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.usefixtures("down_cache_backend")
def test_fragments_render_uncached_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    article = Article.objects.create(title="a")
    comment = Comment.objects.create(article=article, text="up?")
    counter = Counter()

    with caplog.at_level(logging.WARNING, logger="cachesweeper"):
        assert render(COMMENT, comment=comment, counter=counter).endswith("rendered=1")
        assert render(COMMENT, comment=comment, counter=counter).endswith("rendered=2")

    assert "cache unreachable" in caplog.text


@pytest.mark.usefixtures("down_cache_backend")
def test_cachesweeper_for_renders_uncached() -> None:
    article = Article.objects.create(title="a")
    comments = [Comment.objects.create(article=article, text=f"c{i}") for i in range(3)]
    source = "{% cachesweeper_for c in comments 60 %}{{ c.text }}{% endcachesweeper_for %}"
    assert render(source, comments=comments) == "c0c1c2"


@pytest.mark.usefixtures("down_cache_backend")
def test_saving_a_model_never_raises_and_the_sweep_waits_for_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retries.queue.first_delay = 60  # keep the background thread out of this test
    try:
        with caplog.at_level(logging.ERROR, logger="cachesweeper"):
            article = Article.objects.create(title="a")
        assert f"testapp.article.{article.pk}" in caplog.text
        expected = {f"testapp.article.{article.pk}", "testapp.article"}
        assert set(retries.queue.pending()) >= expected
    finally:
        retries.queue.first_delay = 0.5


def test_pending_sweeps_are_delivered_when_the_cache_is_back(
    memcached_server: object,
) -> None:
    from tests.servers import free_port

    live = cache_settings("memcached", memcached_server.location)  # type: ignore[attr-defined]
    down = cache_settings("memcached", f"127.0.0.1:{free_port()}", timeout=0.5)
    with override_settings(CACHES={"default": live}):
        caches["default"].clear()
        article = Article.objects.create(title="a")
        counter = Counter()
        source = "{% cachesweeper article 60 %}{{ counter.next }}{% endcachesweeper %}"
        assert render(source, article=article, counter=counter) == "1"
        before = caches["default"].get(token_key(f"testapp.article.{article.pk}"))

    retries.queue.first_delay = 60
    try:
        with override_settings(CACHES={"default": down}):
            cachesweeper.invalidate_cache_for(article)
            assert retries.queue.flush() == [
                f"testapp.article.{article.pk}",
                "testapp.article.author=",  # the lists it is in
            ]

        with override_settings(CACHES={"default": live}):
            assert retries.queue.flush() == []
            after = caches["default"].get(token_key(f"testapp.article.{article.pk}"))
            assert isinstance(after, int) and after != before
            assert render(source, article=article, counter=counter) == "2"
    finally:
        retries.queue.first_delay = 0.5


def wait_for_the_retry_thread(seconds: float = 5) -> list[str]:
    """What is still pending once the thread delivered everything, or after ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while retries.queue.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    return retries.queue.pending()


def test_new_sweeps_do_not_wait_out_an_earlier_backoff(memcached_server: object) -> None:
    """A flush emptied the queue while the retry thread waited a long backoff."""
    live = cache_settings("memcached", memcached_server.location)  # type: ignore[attr-defined]
    with override_settings(CACHES={"default": live}):
        caches["default"].clear()
        caches["default"].set(token_key("second"), 2**50, None)
        retries.queue.first_delay = 60
        try:
            retries.queue.add(["first"])  # the thread now waits 60 s
            assert retries.queue.flush() == []  # delivered by hand meanwhile
            retries.queue.first_delay = 0.05
            retries.queue.add(["second"])
            assert wait_for_the_retry_thread() == []
        finally:
            retries.queue.first_delay = 0.5
        assert caches["default"].get(token_key("second")) != 2**50


def test_background_retry_delivers_without_help(memcached_server: object) -> None:
    live = cache_settings("memcached", memcached_server.location)  # type: ignore[attr-defined]
    with override_settings(CACHES={"default": live}):
        caches["default"].clear()
        caches["default"].set(token_key("retry-me"), 2**50, None)
        retries.queue.first_delay = 0.05
        try:
            retries.queue.add(["retry-me"])
            assert wait_for_the_retry_thread() == []
        finally:
            retries.queue.first_delay = 0.5
        # The retry thread has its own connection; read through a fresh one.
        after = caches["default"].get(token_key("retry-me"))
        assert isinstance(after, int) and after != 2**50
