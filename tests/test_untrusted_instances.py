"""An instance built in memory never reads nor writes the entry of the row it names.

A draft or a preview (``Article(pk=live.pk, title="draft")``, a revision
rebuilt from JSON) carries the live row's primary key but not its data:
content on it is rendered afresh, never served from the live entry nor
stored over it, and what encloses it (an outer fragment, a list entry, a
cached page) is not stored either. Instances this process loaded or saved
are cached as before.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import RequestFactory

import cachesweeper
from tests.helpers import Counter, calls, reloaded, render, reset
from tests.test_jinja2 import render as render_jinja
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

CARD = (
    '{% cachesweeper article 600 "card" %}{{ article.title }} r{{ counter.next }}'
    "{% endcachesweeper %}"
)
CARD_JINJA = (
    '{% cachesweeper article, 600, "card" %}{{ article.title }} r{{ counter.next() }}'
    "{% endcachesweeper %}"
)


def live_article() -> Article:
    return reloaded(Article.objects.create(title="live"))


def draft_of(article: Article) -> Article:
    """What a preview renders: the live row's primary key, other data, built in memory."""
    return Article(pk=article.pk, title="draft")


@pytest.mark.parametrize(("template", "draw"), [(CARD, render), (CARD_JINJA, render_jinja)])
def test_a_draft_neither_reads_nor_overwrites_the_live_entry(
    template: str, draw: Callable[..., str]
) -> None:
    article, counter = live_article(), Counter()
    assert render(CARD, article=article, counter=counter) == "live r1"  # stored
    reset()

    assert draw(template, article=draft_of(article), counter=counter) == "draft r2"
    assert calls() == []

    assert render(CARD, article=article, counter=counter) == "live r1"
    assert calls() == ["get_many"]  # the live entry, untouched, in one round trip


def test_a_draft_rendered_first_leaves_the_live_entry_to_the_live_page() -> None:
    article, counter = live_article(), Counter()

    assert render(CARD, article=draft_of(article), counter=counter) == "draft r1"
    assert render(CARD, article=article, counter=counter) == "live r2"
    assert render(CARD, article=article, counter=counter) == "live r2"


def test_two_drafts_each_show_their_own_content() -> None:
    article, counter = live_article(), Counter()

    assert render(CARD, article=draft_of(article), counter=counter) == "draft r1"
    other = Article(pk=article.pk, title="second draft")
    assert render(CARD, article=other, counter=counter) == "second draft r2"


def test_content_around_a_draft_is_not_stored() -> None:
    template = (
        '{% cachesweeper "sidebar" 600 %}<{% cachesweeper article 600 "inner" %}'
        "{{ article.title }}{% endcachesweeper %}>{% endcachesweeper %}"
    )
    article = live_article()

    assert render(template, article=draft_of(article)) == "<draft>"
    other = Article(pk=article.pk, title="other draft")
    assert render(template, article=other) == "<other draft>"
    assert render(template, article=article) == "<live>"


def test_a_draft_in_a_list_of_dependencies_is_not_stored() -> None:
    template = '{% cachesweeper deps 600 "pair" %}{{ deps.1.title }}{% endcachesweeper %}'
    article, other = live_article(), live_article()

    assert render(template, deps=[other, draft_of(article)]) == "draft"
    assert render(template, deps=[other, article]) == "live"


def test_a_list_with_a_draft_item_renders_it_and_caches_the_loaded_ones() -> None:
    template = (
        '{% cachesweeper_for article in articles 600 "item" %}'
        "[{{ article.title }} r{{ counter.next }}]{% endcachesweeper_for %}"
    )
    first, second, counter = live_article(), live_article(), Counter()
    assert render(template, articles=[first, second], counter=counter) == "[live r1][live r2]"

    drafted = [first, draft_of(second)]
    assert render(template, articles=drafted, counter=counter) == "[live r1][draft r3]"
    # Neither the draft item nor a list entry holding it was stored.
    assert render(template, articles=[first, second], counter=counter) == "[live r1][live r2]"
    assert render(template, articles=drafted, counter=counter) == "[live r1][draft r4]"


def test_a_page_showing_a_draft_is_not_stored() -> None:
    article, runs = live_article(), Counter()
    template = engines["django"].from_string(
        '{% load cachesweeper %}{% cachesweeper article 600 "card" %}{{ article.title }}'
        "{% endcachesweeper %} run {{ runs.next }}"
    )

    @cachesweeper.cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        shown = draft_of(article) if "preview" in request.GET else article
        return HttpResponse(template.render({"article": shown, "runs": runs}))

    def get(path: str) -> bytes:
        return view(RequestFactory().get(path)).content.strip()  # type: ignore[no-any-return]

    assert get("/article/?preview=1") == b"draft run 1"
    assert get("/article/?preview=1") == b"draft run 2"  # not stored
    assert get("/article/") == b"live run 3"
    assert get("/article/") == b"live run 3"  # the live page is, with its live fragment


def test_a_saved_instance_is_trusted_even_if_built_in_memory() -> None:
    article, counter = live_article(), Counter()
    draft = draft_of(article)
    draft.save()  # now it is what the row holds

    assert render(CARD, article=draft, counter=counter) == "draft r1"
    assert render(CARD, article=draft, counter=counter) == "draft r1"
    assert render(CARD, article=reloaded(draft), counter=counter) == "draft r1"


def test_loaded_instances_and_their_relations_are_cached_as_before() -> None:
    article = live_article()
    Comment.objects.create(article=article, text="c")
    comment = Comment.objects.select_related("article").get()
    counter = Counter()

    assert render(CARD, article=comment.article, counter=counter) == "live r1"
    assert render(CARD, article=reloaded(article), counter=counter) == "live r1"


def test_a_copy_built_in_memory_of_a_changed_instance_is_untrusted() -> None:
    """The README's remedy for an instance changed in memory (a validated form's)."""
    article, counter = live_article(), Counter()
    assert render(CARD, article=article, counter=counter) == "live r1"
    article.title = "edited"
    fields = article._meta.concrete_fields
    copy = type(article)(**{field.attname: getattr(article, field.attname) for field in fields})

    assert render(CARD, article=copy, counter=counter) == "edited r2"
    assert render(CARD, article=reloaded(article), counter=counter) == "live r1"


def preview_request(flag: str) -> HttpRequest:
    """A request marked as a preview the way Wagtail marks its own."""
    request = RequestFactory().get("/article/")
    setattr(request, flag, True)
    return request


@pytest.mark.parametrize("flag", ["is_preview", "is_dummy"])
@pytest.mark.parametrize(("template", "draw"), [(CARD, render), (CARD_JINJA, render_jinja)])
def test_a_preview_request_neither_reads_nor_stores_fragments(
    flag: str, template: str, draw: Callable[..., str]
) -> None:
    """A loaded instance changed in memory (an edit form's draft) is only known by the request."""
    article, counter = live_article(), Counter()
    assert render(CARD, article=article, counter=counter) == "live r1"
    article.title = "draft"  # loaded, so trusted: only the request tells it is a preview
    reset()

    shown = draw(template, article=article, counter=counter, request=preview_request(flag))
    assert shown == "draft r2"
    assert calls() == []
    assert render(CARD, article=reloaded(article), counter=counter) == "live r1"


@pytest.mark.parametrize("flag", ["is_preview", "is_dummy"])
def test_a_preview_request_neither_reads_nor_stores_pages(flag: str) -> None:
    runs = Counter()

    @cachesweeper.cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        kind = "preview" if getattr(request, flag, False) else "live"
        return HttpResponse(f"{kind} {runs.next()}")

    assert view(RequestFactory().get("/article/")).content == b"live 1"
    assert view(preview_request(flag)).content == b"preview 2"
    assert view(preview_request(flag)).content == b"preview 3"
    assert view(RequestFactory().get("/article/")).content == b"live 1"
