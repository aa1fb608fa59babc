"""``EdgeMiddleware`` in an async stack: Django's ``AsyncClient`` and async views.

The middleware runs its async path when the view chain is async. It must
tag responses and deliver LiteSpeed purges exactly as the sync path does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, override_settings

from cachesweeper.middleware import EdgeMiddleware
from tests.testapp.models import Article, Comment

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE = [
    "cachesweeper.middleware.EdgeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
EDGES = [
    {"BACKEND": "cachesweeper.edges.LiteSpeed"},
    {"BACKEND": "cachesweeper.edges.Varnish", "OPTIONS": {"servers": ["http://127.0.0.1:9"]}},
]


@pytest.fixture(autouse=True)
def _async_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from cachesweeper.edges import queue

    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())  # Varnish purges go nowhere
    with override_settings(
        ROOT_URLCONF="tests.edges.views", MIDDLEWARE=MIDDLEWARE, CACHESWEEPER={"EDGES": EDGES}
    ):
        Client().get("/not-cached/")  # drain LiteSpeed purges left by other tests' sweeps
        yield


@pytest.fixture
def async_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the requests ``EdgeMiddleware`` handled on its async path."""
    seen: list[str] = []
    original = EdgeMiddleware._acall

    async def spy(self: EdgeMiddleware, request: Any) -> Any:
        seen.append(request.path)
        return await original(self, request)

    monkeypatch.setattr(EdgeMiddleware, "_acall", spy)
    return seen


def get(path: str, client: AsyncClient | None = None, **extra: Any) -> Any:
    return async_to_sync((client or AsyncClient()).get)(path, **extra)


def post(path: str) -> Any:
    return async_to_sync(AsyncClient().post)(path)


def comment() -> Comment:
    return Comment.objects.create(article=Article.objects.create(title="a"), text="hello")


def test_an_async_view_is_tagged_for_every_edge(async_paths: list[str]) -> None:
    target = comment()
    response = get(f"/async/comment/{target.pk}/")
    assert async_paths == [f"/async/comment/{target.pk}/"]
    assert response.status_code == 200
    assert "hello" in response.content.decode()  # the fragment rendered
    expected = [f"testapp.comment.{target.pk}", "async-page", "testapp.comment.*"]
    assert response["X-LiteSpeed-Tag"].split(",") == expected
    assert response["xkey"].split(" ") == expected
    assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=60"


def test_the_async_request_that_swept_carries_the_litespeed_purge(
    async_paths: list[str],
) -> None:
    target = comment()
    response = post(f"/async/comment/{target.pk}/save/")
    assert async_paths == [f"/async/comment/{target.pk}/save/"]
    assert response.status_code == 200
    parts = response["X-LiteSpeed-Purge"].split(", ")
    assert parts[0] == "stale"
    assert f"tag=testapp.comment.{target.pk}" in parts
    assert f"tag=testapp.article.{target.article_id}" in parts
    assert f"/article/{target.article_id}/" in parts
    assert not get("/not-cached/").has_header("X-LiteSpeed-Purge")  # delivered once


def logged_in() -> AsyncClient:
    from django.contrib.auth.models import User

    client = AsyncClient()
    client.force_login(User.objects.create_user("ann"))
    return client


def test_an_async_logged_in_visitor_gets_no_public_tags() -> None:
    """Telling needs the session and the user, loaded without blocking the event loop."""
    response = get(f"/async/comment/{comment().pk}/", logged_in())
    assert response.status_code == 200
    assert response["X-LiteSpeed-Cache-Control"] == "no-cache"
    assert not response.has_header("X-LiteSpeed-Tag") and not response.has_header("xkey")


def test_an_async_view_without_edge_cache_is_judged_by_the_middleware_alone(
    async_paths: list[str],
) -> None:
    assert get("/async/plain/", logged_in()).status_code == 200
    assert async_paths == ["/async/plain/"]
