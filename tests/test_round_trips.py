"""Round trips of the benchmarked paths, asserted on every cache backend.

The benchmarks (``benchmarks/``) time these paths; the number of cache calls they make
is deterministic, so it is a test: a fragment hit is one ``get_many`` whatever its token
strategy, a cached list of 100 items is one ``get_many``, and a sweep is one round trip
(one ``set_many`` of fresh tokens) however many entries depend on the swept object.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.test import override_settings

import cachesweeper
from tests.helpers import calls, reloaded, render, reset
from tests.servers import cache_settings
from tests.testapp.models import Article, Comment, Page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

COMMENT = '{% cachesweeper comment 600 "comment" %}{{ comment.text }}{% endcachesweeper %}'
PAGE = '{% cachesweeper page 600 "page" %}{{ page.title }}{% endcachesweeper %}'
LIST = (
    '{% cachesweeper_for comment in comments 600 "item" %}'
    "{{ comment.text }};{% endcachesweeper_for %}"
)
# One fragment per loop turn, every one depending on the same article.
ON_ARTICLE = (
    '{% cachesweeper_for article in articles 600 "on-article" forloop.counter %}'
    "{{ article.title }}{{ forloop.counter }};{% endcachesweeper_for %}"
)


def test_fragment_hit_with_a_counter_token_is_one_get_many() -> None:
    article = Article.objects.create(title="Hello")
    comment = Comment.objects.create(article=article, text="First!")
    render(COMMENT, comment=comment)
    reset()

    assert render(COMMENT, comment=comment) == "First!"

    assert calls() == ["get_many"]


def test_fragment_hit_with_an_attribute_token_is_one_get() -> None:
    page = Page.objects.create(title="About")
    render(PAGE, page=page)
    reset()

    assert render(PAGE, page=page) == "About"

    assert calls() == ["get"]  # the entry alone: the token comes with the instance


def test_cached_list_of_100_items_is_one_get_many() -> None:
    article = Article.objects.create(title="Hello")
    Comment.objects.bulk_create(Comment(article=article, text=f"c{n}") for n in range(100))
    comments = list(Comment.objects.order_by("pk"))
    expected = "".join(f"c{n};" for n in range(100))
    assert render(LIST, comments=comments) == expected
    reset()

    assert render(LIST, comments=comments) == expected

    assert calls() == ["get_many"]


@pytest.fixture
def roomy_locmem(cache_backend: str) -> Iterator[None]:
    """LocMem culls past 300 entries by default; make room for 1,000 (servers have it)."""
    if cache_backend != "locmem":
        yield
        return
    entry = cache_settings("locmem", "round-trips", options={"MAX_ENTRIES": 10_000})
    with override_settings(CACHES={"default": entry}):
        caches["default"].clear()
        yield


@pytest.mark.usefixtures("roomy_locmem")
@pytest.mark.parametrize("entries", [10, 1000])
def test_sweep_is_one_round_trip_whatever_the_number_of_entries(entries: int) -> None:
    article = Article.objects.create(title="Hello")
    articles = [article] * entries
    expected = "".join(f"Hello{n};" for n in range(1, entries + 1))
    render(ON_ARTICLE, articles=articles)
    reset()
    assert render(ON_ARTICLE, articles=articles) == expected
    assert calls() == ["get_many"]  # all the entries are there and live
    reset()

    cachesweeper.invalidate_cache_for(article)

    # One set_many giving the swept names fresh tokens; nothing per entry.
    assert calls() == ["set_many"]
    articles = [reloaded(article)] * entries
    reset()
    render(ON_ARTICLE, articles=articles)
    # Every entry was swept: the list entry misses, the items are read, then
    # the items and the list are stored again.
    assert calls() == ["get_many", "get_many", "set_many", "set_many"]


def test_a_list_warmed_from_items_created_one_by_one_is_then_one_get_many() -> None:
    """A cache-warming command: each item is current, though loaded before the others' sweeps."""
    article = Article.objects.create(title="Hello")
    comments = [Comment.objects.create(article=article, text=f"c{n}") for n in range(5)]
    expected = "".join(f"c{n};" for n in range(5))
    assert render(LIST, comments=comments) == expected  # warming: items and list stored
    reset()

    assert render(LIST, comments=comments) == expected

    assert calls() == ["get_many"]
