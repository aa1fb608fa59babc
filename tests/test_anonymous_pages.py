"""Anonymous pages that ask who is logged in are cached, by every page cache and edge.

A new project's base template says ``{% if user.is_authenticated %}``: reading
``request.user`` reads the (empty) session, and ``SessionMiddleware`` adds
``Vary: Cookie``. For a visitor without a session cookie it is still the page
every such visitor gets, so it is stored and published. Writing the session, a
CSRF token, messages shown, or a logged-in user keep a page personal, and the
rule that refused it is said (logged at DEBUG, kept on the response).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.test import Client, override_settings
from django.urls import path

import cachesweeper
from cachesweeper.edges import edge_cache, lscache
from cachesweeper.wsgi import PageCacheMiddleware as WSGIPageCache
from tests.test_wsgi import call
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

CALLS: Counter[str] = Counter()

#: A base template's header, as ``startproject`` sites write it.
LOGIN_LINK = (
    "{% if user.is_authenticated %}Log out{% else %}Log in{% endif %} "
    "{% load cachesweeper %}{% cachesweeper article 60 %}{{ article.title }}{% endcachesweeper %}"
)


def page(request: HttpRequest, name: str = "page") -> HttpResponse:
    """Renders the login link and a fragment; ``?do=`` adds something personal."""
    CALLS[name] += 1
    template = engines["django"].from_string(LOGIN_LINK)
    html = template.render({"article": Article.objects.get(title="a")}, request)
    do = request.GET.get("do")
    if do == "csrf":
        html += get_token(request)
    elif do == "session":
        request.session["seen"] = True
    elif do == "messages":
        html += "".join(str(message) for message in messages.get_messages(request))
    return HttpResponse(f"{html} #{CALLS[name]}")


@cachesweeper.cache_page(60)
def cached(request: HttpRequest) -> HttpResponse:
    return page(request, "cached")


@edge_cache(120)
def edge(request: HttpRequest) -> HttpResponse:
    return page(request, "edge")


@lscache(max_age=120)
def litespeed(request: HttpRequest) -> HttpResponse:
    return page(request, "litespeed")


def flash(request: HttpRequest) -> HttpResponse:
    messages.info(request, "for you")
    return HttpResponse("flashed")


urlpatterns = [
    path("cached/", cached),
    path("site/", page),
    path("plain/", page),
    path("edge/", edge),
    path("litespeed/", litespeed),
    path("flash/", flash),
]

MIDDLEWARE = [
    "cachesweeper.middleware.EdgeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "cachesweeper.middleware.PageCacheMiddleware",
]
SETTINGS: dict[str, Any] = {
    "ROOT_URLCONF": __name__,
    "MIDDLEWARE": MIDDLEWARE,
    "CACHESWEEPER": {
        "PAGE_RULES": [("/site/", 60, 0)],
        "EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed"}],
    },
}


@pytest.fixture(autouse=True)
def _site() -> Any:
    CALLS.clear()
    Article.objects.create(title="a")
    with override_settings(**SETTINGS):
        yield


def body(response: Any) -> str:
    return str(response.content.decode())


@pytest.mark.parametrize("url", ["/cached/", "/site/"])
def test_cache_page_and_the_site_wide_cache_store_it(url: str) -> None:
    first = Client().get(url)
    second = Client().get(url)
    assert body(first) == body(second) == "Log in a #1"
    assert "Cookie" in first["Vary"] and "Cookie" in second["Vary"]


def test_the_wsgi_page_cache_stores_it() -> None:
    app = WSGIPageCache(WSGIHandler(), [("/plain/", 60, 0)], "default")
    first = call(app, "/plain/", HTTP_HOST="testserver")
    second = call(app, "/plain/", HTTP_HOST="testserver")
    assert first[2] == second[2] == b"Log in a #1"
    assert "Cookie" in second[1]["Vary"]
    # A visitor with a session is never served from here.
    third = call(app, "/plain/", HTTP_HOST="testserver", HTTP_COOKIE="sessionid=abc")
    assert third[2] == b"Log in a #2"


def test_edge_cache_publishes_it_with_its_tags() -> None:
    response = Client().get("/edge/")
    assert "s-maxage=120" in response["Cache-Control"]
    assert "private" not in response["Cache-Control"]
    assert "testapp.article" in response["X-LiteSpeed-Tag"]
    assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=120"


def test_lscache_publishes_it() -> None:
    response = Client().get("/litespeed/")
    assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=120"
    assert "testapp.article" in response["X-LiteSpeed-Tag"]


@pytest.mark.parametrize(
    ("do", "reason"),
    [
        ("csrf", "it uses a CSRF token"),
        ("session", "it writes the session"),
    ],
)
@pytest.mark.parametrize("url", ["/cached/", "/site/", "/edge/"])
def test_personal_pages_are_neither_stored_nor_published(
    url: str, do: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="cachesweeper"):
        first = Client().get(f"{url}?do={do}")
    second = Client().get(f"{url}?do={do}")
    assert body(first) != body(second)
    assert "X-LiteSpeed-Tag" not in second
    assert second.get("X-LiteSpeed-Cache-Control", "no-cache") == "no-cache"
    assert getattr(second, "cachesweeper_refusal", "").startswith(reason)
    assert f"not stored: {reason}" in caplog.text


@pytest.mark.parametrize("url", ["/cached/", "/site/", "/edge/"])
def test_a_logged_in_visitor_gets_their_own_page(url: str) -> None:
    User.objects.create_user("ann", password="pw")
    Client().get(url)  # stored for anonymous visitors
    ann = Client()
    ann.login(username="ann", password="pw")
    response = ann.get(url)
    assert body(response).startswith("Log out")
    assert "X-LiteSpeed-Tag" not in response
    assert body(Client().get(url)).startswith("Log in")


@pytest.mark.parametrize("url", ["/cached/", "/site/"])
def test_a_visitor_with_a_pending_message_sees_it(url: str) -> None:
    assert body(Client().get(f"{url}?do=messages")) == "Log in a #1"  # stored: no messages
    visitor = Client()
    visitor.get("/flash/")
    assert "messages" in visitor.cookies
    assert "for you" in body(visitor.get(f"{url}?do=messages"))


@pytest.mark.parametrize("url", ["/cached/", "/site/"])
def test_a_sweep_reaches_the_stored_page(url: str) -> None:
    assert body(Client().get(url)) == "Log in a #1"
    article = Article.objects.get(title="a")
    article.title = "b"
    article.save()
    Article.objects.filter(pk=article.pk).update(title="a")  # the view looks it up by title
    article.title = "a"
    article.save()
    assert body(Client().get(url)) == "Log in a #2"
