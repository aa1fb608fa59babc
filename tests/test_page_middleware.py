"""The site-wide ``PageCacheMiddleware``: URL rules in settings, same safety rules."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponseBase
from django.test import AsyncClient, Client, override_settings
from django.urls.resolvers import URLResolver

import cachesweeper
from tests.helpers import stampede
from tests.testapp import views
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cachesweeper.middleware.PageCacheMiddleware",
]


RULES = [("/wsgi", 60, 0), ("/site/slow", 60, 30, ["slow"]), ("/site", 60, 0)]


@pytest.fixture(autouse=True)
def _site_wide() -> Iterator[None]:
    views.CALLS.clear()
    views.SLOW.update(delay=0.2, fail=False)
    with override_settings(MIDDLEWARE=MIDDLEWARE, CACHESWEEPER={"PAGE_RULES": RULES}):
        yield
    views.SLOW.update(delay=0.2, fail=False)


def body(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined,no-any-return]


def comment() -> Comment:
    return Comment.objects.create(article=Article.objects.create(title="a"), text="before")


def test_matching_pages_are_cached_until_swept(client: Client) -> None:
    target = comment()
    url = f"/wsgi/fragment/{target.pk}/"
    client.get(url)
    client.get(url)
    assert views.CALLS["fragment_plain"] == 1

    target.text = "after"
    target.save()

    assert b"after" in client.get(url).content
    assert views.CALLS["fragment_plain"] == 2


@pytest.mark.parametrize(
    ("tag", "sweep"),
    [
        ("fragments", lambda: cachesweeper.invalidate_tag("fragments")),
        (Article, lambda: Article.objects.create(title="another")),
    ],
    ids=["named-tag", "model"],
)
def test_regex_rule_with_tags(client: Client, tag: object, sweep: Callable[[], object]) -> None:
    url = f"/wsgi/fragment/{comment().pk}/"
    rules = [(re.compile(r"^/wsgi/fragment/\d+/$"), 60, 0, [tag])]
    with override_settings(CACHESWEEPER={"PAGE_RULES": rules}):
        client.get(url)
        client.get(url)
        assert views.CALLS["fragment_plain"] == 1
        cachesweeper.invalidate_tag("unrelated")
        client.get(url)
        assert views.CALLS["fragment_plain"] == 1

        sweep()

        client.get(url)
        assert views.CALLS["fragment_plain"] == 2
        # Paths the regex does not match are not cached.
        client.get("/site/ok/")
        client.get("/site/ok/")
        assert views.CALLS["site_ok"] == 2


def test_rules_are_checked_by_the_system_checks() -> None:
    from django.core import checks

    with override_settings(CACHESWEEPER={"PAGE_RULES": [("/blog", -5, 0)]}):
        found = checks.run_checks(tags=[checks.Tags.caches])
    assert [m.id for m in found if str(m.id).startswith("cachesweeper")] == ["cachesweeper.E003"]
    assert "ttl must be seconds" in found[-1].msg


def test_urls_outside_the_rules_are_not_cached(client: Client) -> None:
    # The same cacheable view: under a rule it runs once, outside every rule each time.
    assert body(client.get("/site/ok/")) == "ok 1"
    assert body(client.get("/site/ok/")) == "ok 1"
    assert body(client.get("/unruled/ok/")) == "ok 2"
    assert body(client.get("/unruled/ok/")) == "ok 3"


def test_post_is_never_cached(client: Client) -> None:
    target = comment()
    url = f"/wsgi/fragment/{target.pk}/"
    client.get(url)
    client.post(url)
    client.post(url)
    assert views.CALLS["fragment_plain"] == 3


def test_async_stack() -> None:
    from asgiref.sync import async_to_sync

    url = f"/wsgi/fragment/{comment().pk}/"

    async def twice() -> tuple[bytes, bytes]:
        client = AsyncClient()
        first = await client.get(url)
        second = await client.get(url)
        return first.content, second.content

    first, second = async_to_sync(twice)()
    assert first == second and b"before" in first
    assert views.CALLS["fragment_plain"] == 1


# -- hits skip everything after the middleware ----------------------------------------

#: Paths of the requests that reached ``Later``.
REACHED: list[str] = []


class Later:
    """A middleware placed after ``PageCacheMiddleware``: notes each request it sees."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        REACHED.append(request.path)
        return self.get_response(request)


def test_a_hit_is_answered_before_url_resolution(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved: list[str] = []
    resolve = URLResolver.resolve

    def spy(self: URLResolver, path: str) -> object:
        resolved.append(path)
        return resolve(self, path)

    monkeypatch.setattr(URLResolver, "resolve", spy)
    REACHED.clear()
    with override_settings(MIDDLEWARE=[*MIDDLEWARE, "tests.test_page_middleware.Later"]):
        assert body(client.get("/site/ok/")) == "ok 1"
        assert resolved == ["/site/ok/"] and REACHED == ["/site/ok/"]

        assert body(client.get("/site/ok/")) == "ok 1"

    # The hit resolved no URL and reached neither the later middleware nor the view.
    assert resolved == ["/site/ok/"] and REACHED == ["/site/ok/"]
    assert views.CALLS["site_ok"] == 1


# -- the safety rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "cookie",
        "private",
        "no-cache",
        "no-store",
        "vary-cookie",
        "404",
        "500",
        "302",
        "streaming",
        "opts-out",
    ],
)
def test_responses_that_must_not_be_shared_are_never_stored(client: Client, kind: str) -> None:
    first = client.get(f"/site/{kind}/")
    second = client.get(f"/site/{kind}/")
    assert views.CALLS[f"site_{kind}"] == 2
    assert first.status_code == second.status_code


def test_an_anonymous_page_that_reads_the_user_is_stored(client: Client) -> None:
    """A base template's login link reads the empty session: still one page for all."""
    client.get("/site/whoami/")
    response = Client().get("/site/whoami/")
    assert views.CALLS["site_whoami"] == 1
    assert "Cookie" in response["Vary"]


def test_set_cookie_reaches_the_client(client: Client) -> None:
    assert client.get("/site/cookie/").cookies["flavour"].value == "oatmeal"


def test_logged_in_users_never_share_a_page(client: Client) -> None:
    User.objects.create_user("ann", password="pw")
    assert body(client.get("/site/ok/")) == "ok 1"  # anonymous: stored
    client.login(username="ann", password="pw")

    # Logged in: neither served the shared page nor stored.
    assert body(client.get("/site/ok/")) == "ok 2"
    assert body(client.get("/site/ok/")) == "ok 3"
    client.logout()
    assert body(client.get("/site/ok/")) == "ok 1"


# -- grace -------------------------------------------------------------------------------


def test_grace_serves_the_stale_page_while_one_request_regenerates(client: Client) -> None:
    assert body(client.get("/site/slow/")) == "site-slow 1"
    cachesweeper.invalidate_tag("slow")
    views.SLOW["delay"] = 2.0

    regenerated: list[str] = []
    regenerating = threading.Thread(
        target=lambda: regenerated.append(body(Client().get("/site/slow/")))
    )
    regenerating.start()
    try:
        deadline = time.monotonic() + 5
        while views.CALLS["site_slow"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        assert body(client.get("/site/slow/")) == "site-slow 1"
        assert time.monotonic() - started < 1.5  # served at once, not after the render
    finally:
        regenerating.join(10)
    assert regenerated == ["site-slow 2"]
    assert body(client.get("/site/slow/")) == "site-slow 2"
    assert views.CALLS["site_slow"] == 2


def test_swept_slow_page_is_regenerated_once_for_twenty_requests(client: Client) -> None:
    assert body(client.get("/site/slow/")) == "site-slow 1"
    cachesweeper.invalidate_tag("slow")

    results = stampede("/site/slow/")

    assert [status for status, _ in results] == [200] * 20
    assert views.CALLS["site_slow"] == 2  # the first render and exactly one regeneration
    assert {text for _, text in results} <= {"site-slow 1", "site-slow 2"}
    assert body(client.get("/site/slow/")) == "site-slow 2"
