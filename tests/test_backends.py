"""The read path remembers ``caches[alias]``, but always answers what Django would."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.test import override_settings

from cachesweeper.backends import backend
from tests.helpers import render
from tests.servers import cache_settings
from tests.testapp.models import Article

FRAGMENT = "{% cachesweeper article 60 %}{{ article.title }}{% endcachesweeper %}"


def in_thread(func: Callable[[], Any]) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(func()))
    thread.start()
    thread.join()
    return result[0]


def test_it_is_django_s_backend(cache_backend: str) -> None:
    assert backend("default") is caches["default"]
    assert backend("default") is caches["default"]


def test_each_alias_has_its_own(cache_backend: str) -> None:
    other = cache_settings("locmem", "cachesweeper-tests-other", counting=False)
    with override_settings(CACHES={"default": settings.CACHES["default"], "other": other}):
        assert backend("other") is caches["other"]
        assert backend("default") is caches["default"]
        assert backend("other") is not backend("default")


def test_another_thread_gets_that_thread_s_backend(cache_backend: str) -> None:
    mine = backend("default")
    theirs, django_s = in_thread(lambda: (backend("default"), caches["default"]))
    assert theirs is django_s
    assert theirs is not mine


def test_a_context_copied_into_another_thread_is_not_shared(cache_backend: str) -> None:
    """As ``asyncio.to_thread`` does: the memo travels with the context, and is ignored."""
    mine = backend("default")
    context = contextvars.copy_context()
    theirs, django_s = in_thread(
        lambda: context.run(lambda: (backend("default"), caches["default"]))
    )
    assert theirs is django_s
    assert theirs is not mine


def test_async_tasks_get_the_backend_django_gives_them(cache_backend: str) -> None:
    """What a task meets first stays the task's, even when its parent remembers others."""

    async def task() -> tuple[BaseCache, BaseCache, BaseCache]:
        first = backend("default")
        await asyncio.sleep(0)
        return first, backend("default"), caches["default"]

    async def main() -> list[tuple[BaseCache, BaseCache, BaseCache]]:
        backend("other")  # the parent context remembers a backend before the tasks start
        return list(await asyncio.gather(task(), task()))

    other = cache_settings("locmem", "cachesweeper-tests-other", counting=False)
    with override_settings(CACHES={"default": settings.CACHES["default"], "other": other}):
        results = in_thread(lambda: asyncio.run(main()))
    for first, again, django_s in results:
        assert first is again is django_s
    assert results[0][0] is not results[1][0]  # each task made its own, as with Django


def test_overriding_caches_is_followed_at_once(cache_backend: str) -> None:
    before = backend("default")
    entry = cache_settings("locmem", "cachesweeper-tests-overridden", counting=False)
    with override_settings(CACHES={"default": entry}):
        assert backend("default") is caches["default"]
        assert backend("default") is not before
    assert backend("default") is caches["default"]


@pytest.mark.django_db
def test_a_fragment_lands_in_the_overriding_cache(cache_backend: str) -> None:
    article = Article.objects.create(title="first")
    assert render(FRAGMENT, article=article) == "first"
    entry = cache_settings("locmem", "cachesweeper-tests-overridden", counting=False)
    with override_settings(CACHES={"default": entry}):
        caches["default"].clear()
        Article.objects.filter(pk=article.pk).update(title="second")
        article.refresh_from_db()
        # A fresh cache: no entry there yet, so the fragment renders anew.
        assert render(FRAGMENT, article=article) == "second"
