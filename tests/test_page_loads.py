"""Pages know what they show: a cached page depends on what its queries read.

A page cached whole (``cache_page``, the site-wide ``PageCacheMiddleware``, an
edge through ``EdgeMiddleware``) depends, besides its tags and fragments, on
the rows of registered models its request looked up by primary key and on
the models its other queries (lists, counts, filters) read. No ``tags=`` is
written by hand in this module: an edit re-renders exactly the pages that
show it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

import cachesweeper
from tests.helpers import registered
from tests.testapp.models import Article, Author, Comment, Restaurant, Topic

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

RENDERS: Counter[str] = Counter()


def footer() -> str:
    """What a base template shows on every page: here, the topics."""
    return ", ".join(topic.name for topic in Topic.objects.order_by("name"))


def article(request: HttpRequest, pk: int) -> HttpResponse:
    RENDERS[f"article {pk}"] += 1
    shown = Article.objects.get(pk=pk)
    return HttpResponse(f"{shown.title} | {footer()}")


def articles(request: HttpRequest) -> HttpResponse:
    RENDERS["articles"] += 1
    titles = ", ".join(a.title for a in Article.objects.order_by("title"))
    return HttpResponse(f"{titles} | {footer()}")


def comment_count(request: HttpRequest, pk: int) -> HttpResponse:
    RENDERS[f"count {pk}"] += 1
    return HttpResponse(f"{Comment.objects.filter(article_id=pk).count()} comments")


def byline(request: HttpRequest, pk: int) -> HttpResponse:
    """Follows a foreign key to ``Author``, a model that is not registered."""
    RENDERS[f"byline {pk}"] += 1
    shown = Article.objects.get(pk=pk)
    return HttpResponse(f"{shown.title} by {shown.author.name if shown.author else '-'}")


def restaurant(request: HttpRequest, pk: int) -> HttpResponse:
    RENDERS[f"restaurant {pk}"] += 1
    return HttpResponse(Restaurant.objects.get(pk=pk).name)


def several(request: HttpRequest) -> HttpResponse:
    """Looks up three articles one by one (the N+1 shape)."""
    RENDERS["several"] += 1
    pks = request.GET.getlist("pk")
    return HttpResponse(", ".join(Article.objects.get(pk=pk).title for pk in pks))


def swept_while_rendering(request: HttpRequest, pk: int) -> HttpResponse:
    """Another process edits the article after this request read it."""
    RENDERS["swept"] += 1
    shown = Article.objects.get(pk=pk)
    Article.objects.get(pk=pk).save()  # commits and sweeps testapp.article.<pk>
    return HttpResponse(shown.title)


async def async_article(request: HttpRequest, pk: int) -> HttpResponse:
    RENDERS[f"async {pk}"] += 1
    shown = await sync_to_async(Article.objects.get)(pk=pk)
    return HttpResponse(shown.title)


cached = cachesweeper.cache_page(60)
urlpatterns = [
    path("article/<int:pk>/", cached(article)),
    path("articles/", cached(articles)),
    path("count/<int:pk>/", cached(comment_count)),
    path("byline/<int:pk>/", cached(byline)),
    path("restaurant/<int:pk>/", cached(restaurant)),
    path("several/", cached(several)),
    path("swept/<int:pk>/", cached(swept_while_rendering)),
    path("async/<int:pk>/", cached(async_article)),
    # Cached by the site-wide middleware's rule, and tagged at the edge.
    path("site/<int:pk>/", article),
    path("edge/<int:pk>/", article),
    path("edge/", articles),
]

SETTINGS: dict[str, Any] = {
    "ROOT_URLCONF": __name__,
    "MIDDLEWARE": [
        "cachesweeper.middleware.EdgeMiddleware",
        "cachesweeper.middleware.PageCacheMiddleware",
    ],
    "CACHESWEEPER": {
        "PAGE_RULES": [("/site/", 60, 0)],
        "EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed"}],
    },
}


@pytest.fixture(autouse=True)
def _site() -> Any:
    RENDERS.clear()
    with override_settings(**SETTINGS):
        yield


def get(url: str) -> str:
    return str(Client().get(url).content.decode())


def tags(url: str) -> list[str]:
    return str(Client().get(url)["X-LiteSpeed-Tag"]).split(",")


@pytest.mark.parametrize("prefix", ["/article/", "/site/"])
def test_editing_the_row_a_page_shows_renders_it_again_and_only_it(prefix: str) -> None:
    one, two = Article.objects.create(title="one"), Article.objects.create(title="two")
    assert get(f"{prefix}{one.pk}/") == "one | "
    assert get(f"{prefix}{two.pk}/") == "two | "
    assert get(f"{prefix}{one.pk}/") == "one | "
    assert RENDERS[f"article {one.pk}"] == 1

    one.title = "one, edited"
    one.save()
    assert get(f"{prefix}{one.pk}/") == "one, edited | "
    assert get(f"{prefix}{two.pk}/") == "two | "
    assert RENDERS[f"article {one.pk}"] == 2
    assert RENDERS[f"article {two.pk}"] == 1  # another article's edit left it alone


def test_a_list_is_rendered_again_when_a_row_is_added_changed_or_deleted() -> None:
    first = Article.objects.create(title="a")
    assert get("/articles/") == "a | "
    assert get("/articles/") == "a | "
    assert RENDERS["articles"] == 1

    second = Article.objects.create(title="b")
    assert get("/articles/") == "a, b | "
    second.title = "c"
    second.save()
    assert get("/articles/") == "a, c | "
    first.delete()
    assert get("/articles/") == "c | "
    assert RENDERS["articles"] == 4


@pytest.mark.parametrize("prefix", ["/article/", "/site/"])
def test_a_footer_edit_renders_every_page_that_shows_it_again(prefix: str) -> None:
    topic = Topic.objects.create(name="django")
    one, two = Article.objects.create(title="one"), Article.objects.create(title="two")
    assert get(f"{prefix}{one.pk}/") == "one | django"
    assert get(f"{prefix}{two.pk}/") == "two | django"

    topic.name = "python"
    topic.save()
    assert get(f"{prefix}{one.pk}/") == "one | python"
    assert get(f"{prefix}{two.pk}/") == "two | python"
    assert RENDERS[f"article {one.pk}"] == RENDERS[f"article {two.pk}"] == 2


def test_a_count_depends_on_the_model_it_counts() -> None:
    shown = Article.objects.create(title="a")
    assert get(f"/count/{shown.pk}/") == "0 comments"
    assert get(f"/count/{shown.pk}/") == "0 comments"
    Comment.objects.create(article=shown, text="first!")
    assert get(f"/count/{shown.pk}/") == "1 comments"
    assert RENDERS[f"count {shown.pk}"] == 2


def test_a_model_that_is_not_registered_is_not_a_dependency() -> None:
    """``Author`` is not registered: nothing sweeps it, so a page cannot depend on it.
    Register it (or tag the page) to have author edits reach the page."""
    ada = Author.objects.create(name="Ada")
    shown = Article.objects.create(title="a", author=ada)
    assert get(f"/byline/{shown.pk}/") == "a by Ada"
    ada.name = "Ada L."
    ada.save()
    assert get(f"/byline/{shown.pk}/") == "a by Ada"
    assert RENDERS[f"byline {shown.pk}"] == 1


def test_a_registered_model_followed_by_foreign_key_is_a_dependency() -> None:
    ada = Author.objects.create(name="Ada")
    shown = Article.objects.create(title="a", author=ada)
    with registered(Author):
        assert get(f"/byline/{shown.pk}/") == "a by Ada"
        ada.name = "Ada L."
        ada.save()
        assert get(f"/byline/{shown.pk}/") == "a by Ada L."
    assert RENDERS[f"byline {shown.pk}"] == 2


def test_multi_table_inheritance_depends_on_the_row_at_each_level() -> None:
    place = Restaurant.objects.create(name="Chez Ada")
    assert get(f"/restaurant/{place.pk}/") == "Chez Ada"
    assert get(f"/restaurant/{place.pk}/") == "Chez Ada"
    place.name = "Chez Ada et Charles"
    place.save()
    assert get(f"/restaurant/{place.pk}/") == "Chez Ada et Charles"
    assert RENDERS[f"restaurant {place.pk}"] == 2


def test_the_edge_tags_name_the_rows_and_models_read() -> None:
    shown = Article.objects.create(title="a")
    Topic.objects.create(name="django")
    detail = tags(f"/edge/{shown.pk}/")
    assert f"testapp.article.{shown.pk}" in detail
    assert "testapp.article" not in detail  # a lookup by primary key names the row only
    assert "testapp.topic" in detail  # the footer's list
    assert "testapp.article" in tags("/edge/")


def test_past_the_instance_limit_a_page_depends_on_the_model() -> None:
    rows = [Article.objects.create(title=title) for title in "abc"]
    query = "&".join(f"pk={row.pk}" for row in rows)
    with override_settings(CACHESWEEPER={**SETTINGS["CACHESWEEPER"], "INSTANCE_LIMIT": 2}):
        assert get(f"/several/?{query}") == "a, b, c"
        Article.objects.create(title="not shown")  # sweeps the model, not a row shown
        assert get(f"/several/?{query}") == "a, b, c"
        assert RENDERS["several"] == 2
    # Within the default limit, the page rendered next depends on its three rows only.
    Article.objects.create(title="not shown either")
    assert get(f"/several/?{query}") == "a, b, c"
    assert RENDERS["several"] == 3
    Article.objects.create(title="not shown, still")
    assert get(f"/several/?{query}") == "a, b, c"
    assert RENDERS["several"] == 3


def test_a_page_whose_row_was_swept_while_it_rendered_is_not_stored() -> None:
    shown = Article.objects.create(title="a")
    assert get(f"/swept/{shown.pk}/") == "a"
    assert get(f"/swept/{shown.pk}/") == "a"
    assert RENDERS["swept"] == 2


def test_an_async_view_depends_on_what_it_read() -> None:
    shown = Article.objects.create(title="a")
    client = AsyncClient()

    def get_async() -> bytes:
        return bytes(async_to_sync(client.get)(f"/async/{shown.pk}/").content)

    assert get_async() == get_async() == b"a"
    shown.title = "b"
    shown.save()
    assert get_async() == b"b"
    assert RENDERS[f"async {shown.pk}"] == 2
