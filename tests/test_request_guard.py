"""A view loads its data before its template reads tokens: a sweep in between is caught.

Without the guard, the racing request would store the old data under the new
token, and every later request would be served that old data.
"""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client, override_settings
from django.urls import path

import cachesweeper
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

TEMPLATE = (
    "{% load cachesweeper %}{% cachesweeper article 60 %}"
    "{{ article.title }}{{ renders.append }}{% endcachesweeper %}"
)
RENDERS: list[str] = []  # one item per render of the fragment's body


def article_view(request: HttpRequest, pk: int) -> HttpResponse:
    article = Article.objects.get(pk=pk)  # the view loads its data first
    if "race" in request.GET:
        # Meanwhile another process commits a change and sweeps.
        Article.objects.filter(pk=pk).update(title="new")
        cachesweeper.invalidate_cache_for(article)
    renders = {"append": lambda: RENDERS.append(article.title) or ""}
    html = engines["django"].from_string(TEMPLATE).render({"article": article, "renders": renders})
    return HttpResponse(html)


urlpatterns = [path("article/<int:pk>/", article_view)]


@override_settings(ROOT_URLCONF=__name__)
def test_content_loaded_before_a_sweep_is_served_but_not_stored(client: Client) -> None:
    article = Article.objects.create(title="old")
    url = f"/article/{article.pk}/"

    # This request began before the change committed: old data is right for it...
    assert client.get(url + "?race=1").content == b"old"
    # ...but it must not be stored under the new token.
    assert client.get(url).content == b"new"
    assert client.get(url).content == b"new"


@override_settings(ROOT_URLCONF=__name__)
def test_a_sweep_before_the_request_began_does_not_stop_storing(client: Client) -> None:
    article = Article.objects.create(title="a")
    url = f"/article/{article.pk}/"
    RENDERS.clear()

    client.get(url)
    client.get(url)

    assert RENDERS == ["a"]  # rendered once, then served from its entry


def test_outside_a_request_nothing_is_guarded() -> None:
    from cachesweeper import collector

    assert collector.request_started_at() is None
