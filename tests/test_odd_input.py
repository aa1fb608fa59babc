"""Odd dependencies never show another object's content and never break a page.

An unsaved instance (no primary key) has no identity: a fragment on it is
rendered afresh every time, never stored nor read, and what encloses it is
not stored either. ``None`` (a null foreign key) is no dependency: the
fragment is cached on its other dependencies, or on its timeout and vary-on
values alone, as Django's ``{% cache %}`` is.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

import cachesweeper
from tests.helpers import Counter, calls, reloaded, render, reset
from tests.test_jinja2 import render as render_jinja
from tests.testapp.models import Article, Author, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

Draw = Callable[..., str]  # renders a template source (Django or Jinja2) with a context

ON_ARTICLE = (
    '{% cachesweeper article 600 "card" %}{{ article.title }} r{{ counter.next }}'
    "{% endcachesweeper %}"
)
ON_ARTICLE_JINJA = (
    '{% cachesweeper article, 600, "card" %}{{ article.title }} r{{ counter.next() }}'
    "{% endcachesweeper %}"
)
LIST = (
    '{% cachesweeper_for comment in comments 600 "item" %}'
    "[{{ comment.text }} r{{ counter.next }}]{% endcachesweeper_for %}"
)
LIST_JINJA = (
    '{% cachesweeper_for comment in comments, 600, "item" %}'
    "[{{ comment.text }} r{{ counter.next() }}]{% endcachesweeper_for %}"
)
BYLINE = (
    '{% cachesweeper article.author 600 "byline" %}'
    "{{ article.author.name|default:'anonymous' }} r{{ counter.next }}{% endcachesweeper %}"
)
BYLINE_JINJA = (
    '{% cachesweeper article.author, 600, "byline" %}'
    "{{ article.author.name or 'anonymous' }} r{{ counter.next() }}{% endcachesweeper %}"
)


def saved_comments(*texts: str) -> list[Comment]:
    article = Article.objects.create(title="Hello")
    return [reloaded(Comment.objects.create(article=article, text=text)) for text in texts]


# --- unsaved instances --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "draw"), [(ON_ARTICLE, render), (ON_ARTICLE_JINJA, render_jinja)]
)
def test_two_unsaved_instances_each_show_their_own_content(template: str, draw: Draw) -> None:
    counter = Counter()

    assert draw(template, article=Article(title="one"), counter=counter) == "one r1"
    assert draw(template, article=Article(title="two"), counter=counter) == "two r2"
    assert draw(template, article=Article(title="one"), counter=counter) == "one r3"


def test_a_fragment_on_an_unsaved_instance_neither_reads_nor_writes_the_cache() -> None:
    render(ON_ARTICLE, article=Article(title="draft"), counter=Counter())

    assert calls() == []


def test_an_unsaved_instance_in_a_list_of_dependencies_is_not_stored() -> None:
    template = '{% cachesweeper deps 600 "pair" %}{{ deps.1.title }}{% endcachesweeper %}'
    saved = reloaded(Article.objects.create(title="saved"))  # loaded after its sweep

    assert render(template, deps=[saved, Article(title="one")]) == "one"
    assert render(template, deps=[saved, Article(title="two")]) == "two"


def test_once_saved_the_instance_is_cached() -> None:
    counter = Counter()
    article = Article(title="draft")
    assert render(ON_ARTICLE, article=article, counter=counter) == "draft r1"
    article.save()

    assert render(ON_ARTICLE, article=article, counter=counter) == "draft r2"
    assert render(ON_ARTICLE, article=article, counter=counter) == "draft r2"


@pytest.mark.parametrize(("template", "draw"), [(LIST, render), (LIST_JINJA, render_jinja)])
def test_a_list_with_unsaved_items_renders_them_afresh_and_caches_the_saved_ones(
    template: str, draw: Draw
) -> None:
    first, second = saved_comments("c0", "c1")
    counter = Counter()

    def comments(draft: str, other: str) -> list[Comment]:
        article = first.article
        return [first, Comment(article=article, text=draft), second, Comment(text=other)]

    assert draw(template, comments=comments("a", "b"), counter=counter) == (
        "[c0 r1][a r2][c1 r3][b r4]"
    )
    # The saved items come from their entries; each unsaved one shows its own text.
    assert draw(template, comments=comments("x", "y"), counter=counter) == (
        "[c0 r1][x r5][c1 r3][y r6]"
    )


def test_content_around_an_unsaved_instance_is_not_stored() -> None:
    template = (
        '{% cachesweeper "sidebar" 600 %}<{% cachesweeper article 600 "inner" %}'
        "{{ article.title }}{% endcachesweeper %}>{% endcachesweeper %}"
    )

    assert render(template, article=Article(title="one")) == "<one>"
    assert render(template, article=Article(title="two")) == "<two>"


def test_a_list_around_an_unsaved_item_is_not_stored() -> None:
    template = (
        '{% cachesweeper "comments" 600 %}{% cachesweeper_for comment in comments 600 "c" %}'
        "{{ comment.text }};{% endcachesweeper_for %}{% endcachesweeper %}"
    )
    (saved,) = saved_comments("c0")

    assert render(template, comments=[saved, Comment(text="a")]) == "c0;a;"
    assert render(template, comments=[saved, Comment(text="b")]) == "c0;b;"


# --- None as a dependency -----------------------------------------------------------------


@pytest.mark.parametrize(("template", "draw"), [(BYLINE, render), (BYLINE_JINJA, render_jinja)])
def test_a_null_foreign_key_is_cached_on_the_timeout_and_vary_on_values(
    template: str, draw: Draw
) -> None:
    article = Article.objects.create(title="Hello")
    counter = Counter()

    assert draw(template, article=article, counter=counter) == "anonymous r1"
    assert draw(template, article=article, counter=counter) == "anonymous r1"

    article.author = Author.objects.create(name="Ada")
    article.save()

    # Now it depends on the author: another entry.
    assert draw(template, article=article, counter=counter) == "Ada r2"


def test_none_in_a_list_of_dependencies_leaves_the_others() -> None:
    template = (
        '{% cachesweeper deps 600 "pair" %}{{ deps.0.title }} r{{ counter.next }}'
        "{% endcachesweeper %}"
    )
    article = Article.objects.create(title="one")
    counter = Counter()
    assert render(template, deps=[article, None], counter=counter) == "one r1"
    assert render(template, deps=[article, None], counter=counter) == "one r1"

    article.title = "two"
    article.save()

    assert render(template, deps=[article, None], counter=counter) == "two r2"


@pytest.mark.parametrize(
    ("template", "draw"),
    [
        (
            '{% cachesweeper article.author.profile 600 "p" %}'
            "r{{ counter.next }}{% endcachesweeper %}",
            render,
        ),
        (
            '{% cachesweeper article.author.profile, 600, "p" %}'
            "r{{ counter.next() }}{% endcachesweeper %}",
            render_jinja,
        ),
    ],
)
def test_an_attribute_of_a_null_foreign_key_is_no_dependency_either(
    template: str, draw: Draw
) -> None:
    article = Article.objects.create(title="Hello")
    counter = Counter()

    assert draw(template, article=article, counter=counter) == "r1"
    assert draw(template, article=article, counter=counter) == "r1"


@pytest.mark.parametrize(
    ("template", "draw"),
    [
        (
            '{% cachesweeper_for author in authors 600 "a" %}'
            "[{{ author.name|default:'none' }} r{{ counter.next }}]{% endcachesweeper_for %}",
            render,
        ),
        (
            '{% cachesweeper_for author in authors, 600, "a" %}'
            "[{{ author.name or 'none' }} r{{ counter.next() }}]{% endcachesweeper_for %}",
            render_jinja,
        ),
    ],
)
def test_none_items_of_a_list_render_and_are_cached(template: str, draw: Draw) -> None:
    ada = Author.objects.get(pk=Author.objects.create(name="Ada").pk)
    counter = Counter()

    assert draw(template, authors=[ada, None], counter=counter) == "[Ada r1][none r2]"
    assert draw(template, authors=[ada, None], counter=counter) == "[Ada r1][none r2]"


def test_a_page_tag_of_none_is_no_tag() -> None:
    runs = Counter()

    @cachesweeper.cache_page(60, tags=[None, "frontpage"])
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"run {runs.next()}")

    request = RequestFactory().get("/none-tag/")
    assert view(request).content == b"run 1"
    assert view(RequestFactory().get("/none-tag/")).content == b"run 1"

    cachesweeper.invalidate_tag("frontpage")

    assert view(RequestFactory().get("/none-tag/")).content == b"run 2"


def test_the_hit_of_a_fragment_without_dependencies_is_one_read() -> None:
    article = Article.objects.create(title="Hello")
    render(BYLINE, article=article, counter=Counter())
    reset()

    render(BYLINE, article=article, counter=Counter())

    assert calls() == ["get"]  # the entry alone, like Django's {% cache %}
