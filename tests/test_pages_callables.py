"""``cache_page`` callables: tags that may say "no tag", timeouts that read the response."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

import cachesweeper

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

RUNS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    RUNS.clear()
    yield
    RUNS.clear()


@pytest.fixture
def rf() -> RequestFactory:
    return RequestFactory()


def get(rf: RequestFactory, url: str = "/page/") -> HttpRequest:
    """An anonymous visitor's request, as AuthenticationMiddleware leaves it."""
    request = rf.get(url)
    request.user = AnonymousUser()
    return request


def text(response: Any) -> str:
    return response.content.decode()  # type: ignore[no-any-return]


def counted(timeout: Any = 60, **options: Any) -> Callable[..., HttpResponse]:
    @cachesweeper.cache_page(timeout, **options)
    def view(request: HttpRequest) -> HttpResponse:
        RUNS["view"] += 1
        response = HttpResponse(f"run {RUNS['view']}")
        if "draft" in request.GET:
            response["X-Draft"] = "1"
        return response

    return view


def user_tag(request: HttpRequest) -> str | None:
    """The visitor's user as a tag; ``None`` (no tag) for an anonymous visitor."""
    user = request.user
    return f"user-{user.pk}" if user.is_authenticated else None


@pytest.mark.parametrize(
    "tags",
    [["shop", user_tag], [lambda request: ["shop", None]]],
    ids=["none", "none-in-a-list"],
)
def test_a_tag_callable_may_return_none_for_no_tag(rf: RequestFactory, tags: list[Any]) -> None:
    view = counted(tags=tags)
    assert text(view(get(rf))) == "run 1"
    assert text(view(get(rf))) == "run 1"

    cachesweeper.invalidate_tag("shop")  # the page's other tags still sweep it

    assert text(view(get(rf))) == "run 2"
    assert text(view(get(rf))) == "run 2"


def test_a_callable_timeout_of_zero_stores_nothing(rf: RequestFactory) -> None:
    view = counted(lambda response: 0 if response.has_header("X-Draft") else 600)

    view(get(rf, "/page/?draft"))
    assert text(view(get(rf, "/page/?draft"))) == "run 2"
    view(get(rf, "/page/"))
    assert text(view(get(rf, "/page/"))) == "run 3"


def test_a_callable_timeout_sets_how_long_the_page_stays(rf: RequestFactory) -> None:
    asked: list[int] = []

    def one_second(response: HttpResponse) -> int:
        asked.append(response.status_code)
        return 1

    view = counted(one_second)
    view(get(rf))
    assert text(view(get(rf))) == "run 1"
    assert asked == [200]  # asked once, for the response that was stored

    time.sleep(1.5)

    assert text(view(get(rf))) == "run 2"
