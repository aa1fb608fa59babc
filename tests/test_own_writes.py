"""A writer sees its own writes, before its transaction commits.

A sweep inside ``transaction.atomic()`` waits for the commit; meanwhile the
transaction that made it renders the swept dependencies afresh and stores
nothing. Other readers keep the old entry until the commit; a rollback
changes nothing. Seen from Django's ``TestCase`` (the commit never comes), a
view under ``ATOMIC_REQUESTS``, and async views.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import AsyncClient, Client, TestCase, override_settings
from django.urls import path

from tests.helpers import Counter, render
from tests.testapp.models import Article

ON_ARTICLE = (
    "{% cachesweeper article 500 %}{{ article.title }} {{ counter.next }}{% endcachesweeper %}"
)
COUNTER = Counter()


def _page(request: HttpRequest, article: Article) -> HttpResponse:
    template = engines["django"].from_string("{% load cachesweeper %}" + ON_ARTICLE)
    return HttpResponse(template.render({"article": article, "counter": COUNTER}, request))


def article_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Renders the article; a POST renames it first (one transaction under ATOMIC_REQUESTS)."""
    article = Article.objects.get(pk=pk)
    if request.method == "POST":
        article.title = request.POST["title"]
        article.save()
    return _page(request, article)


async def async_article_view(request: HttpRequest, pk: int) -> HttpResponse:
    article = await Article.objects.aget(pk=pk)
    if request.method == "POST":
        article.title = request.POST["title"]
        await article.asave()
    return _page(request, article)


urlpatterns = [
    path("article/<int:pk>/", article_view),
    path("async/article/<int:pk>/", async_article_view),
]


def _render(article: Article) -> str:
    return render(ON_ARTICLE, article=article, counter=COUNTER)


@pytest.fixture(autouse=True)
def _counter() -> None:
    COUNTER.value = 0


@pytest.mark.django_db  # each test runs in a transaction that is rolled back, as in TestCase
@pytest.mark.usefixtures("cache_backend")
class TestInsideATestCaseTransaction:
    def test_a_save_shows_at_once(self) -> None:
        article = Article.objects.create(title="a")
        assert _render(article) == "a 1"
        article.title = "b"
        article.save()
        assert _render(article) == "b 2"

    def test_content_on_an_unsaved_change_is_not_stored(self) -> None:
        article = Article.objects.create(title="a")
        _render(article)
        article.save()
        assert (_render(article), _render(article)) == ("a 2", "a 3")

    def test_content_on_other_dependencies_is_still_cached(self) -> None:
        Article.objects.create(title="a")  # its sweep waits for the commit
        source = "{% cachesweeper 'sidebar' 500 %}{{ counter.next }}{% endcachesweeper %}"
        assert render(source, counter=COUNTER) == render(source, counter=COUNTER) == "1"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
class TestInARealTransaction:
    def test_other_readers_keep_the_old_entry_until_the_commit(self) -> None:
        article = Article.objects.create(title="a")
        assert _render(article) == "a 1"
        seen: list[str] = []
        with transaction.atomic():
            article.title = "b"
            article.save()
            assert _render(article) == "b 2"
            reader = threading.Thread(target=lambda: seen.append(_render(article)))
            reader.start()
            reader.join()
        assert seen == ["a 1"]  # another thread: the old entry, nothing uncommitted
        assert _render(article) == "b 3"
        assert _render(article) == "b 3"

    def test_a_rollback_changes_nothing(self) -> None:
        article = Article.objects.create(title="a")
        assert _render(article) == "a 1"
        with pytest.raises(RuntimeError), transaction.atomic():
            article.title = "b"
            article.save()
            assert _render(article) == "b 2"
            raise RuntimeError("rolled back")
        article.refresh_from_db()
        assert _render(article) == "a 1"

    def test_a_rolled_back_savepoint_changes_nothing(self) -> None:
        article = Article.objects.create(title="a")
        assert _render(article) == "a 1"
        with transaction.atomic():
            try:
                with transaction.atomic():
                    article.save()
                    assert _render(article) == "a 2"
                    raise RuntimeError
            except RuntimeError:
                pass
            assert _render(article) == "a 1"

    @override_settings(ROOT_URLCONF=__name__)
    def test_a_view_under_atomic_requests_shows_what_it_saved(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
        article = Article.objects.create(title="a")
        client = Client()
        url = f"/article/{article.pk}/"
        assert client.get(url).content == b"a 1"
        assert client.get(url).content == b"a 1"
        assert client.post(url, {"title": "b"}).content == b"b 2"
        assert client.get(url).content == b"b 3"  # committed: stored again
        assert client.get(url).content == b"b 3"

    @override_settings(ROOT_URLCONF=__name__)
    def test_an_async_view_shows_what_it_saved(self) -> None:
        article = Article.objects.create(title="a")
        client = AsyncClient()
        url = f"/async/article/{article.pk}/"
        assert async_to_sync(client.get)(url).content == b"a 1"
        assert async_to_sync(client.post)(url, {"title": "b"}).content == b"b 2"
        assert async_to_sync(client.get)(url).content.startswith(b"b ")


@pytest.mark.django_db
@pytest.mark.usefixtures("cache_backend")
@override_settings(ROOT_URLCONF=__name__)
def test_an_async_view_in_a_test_transaction_shows_what_it_saved() -> None:
    """The save runs in ``sync_to_async``; the render sees the sweep it deferred."""
    article = Article.objects.create(title="a")
    client = AsyncClient()
    url = f"/async/article/{article.pk}/"
    assert async_to_sync(client.get)(url).content == b"a 1"
    assert async_to_sync(client.post)(url, {"title": "b"}).content == b"b 2"
    assert async_to_sync(client.get)(url).content == b"b 3"


class DjangoTestCase(TestCase):
    """What a user's own test sees, with Django's ``TestCase`` and the default cache."""

    def test_a_save_shows_in_the_next_render(self) -> None:
        article = Article.objects.create(title="a")
        counter = Counter()
        context: dict[str, Any] = {"article": article, "counter": counter}
        assert render(ON_ARTICLE, **context) == "a 1"
        article.title = "b"
        article.save()
        assert render(ON_ARTICLE, **context) == "b 2"
