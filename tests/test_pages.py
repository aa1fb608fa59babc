"""``cachesweeper.cache_page``: pages cached on the same tokens as fragments."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.test import AsyncClient, Client, override_settings

import cachesweeper
from cachesweeper import pages
from tests.testapp import views
from tests.testapp.models import Article, Author, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    views.CALLS.clear()
    yield
    views.CALLS.clear()


def body(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined,no-any-return]


def wsgi(method: str, path: str) -> tuple[str, dict[str, str], bytes]:
    """Call Django's WSGI handler directly: unlike the test client, it keeps HEAD bodies."""
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    environ["HTTP_HOST"] = "testserver"  # the test client's host: the same page key
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    result = WSGIHandler()(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]
    return captured["status"], captured["headers"], content


class Clock:
    """Stands in for the ``time`` module in ``cachesweeper.pages``: its clock, moved at will."""

    def __init__(self, frozen: float | None = None) -> None:
        self.frozen = frozen
        self.offset = 0.0

    def time(self) -> float:
        return (time.time() if self.frozen is None else self.frozen) + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock pages are stamped and aged with (entries still expire in real time)."""
    moved = Clock()
    monkeypatch.setattr(pages, "time", moved)
    return moved


def test_repeated_gets_run_the_view_once(client: Client) -> None:
    assert body(client.get("/plain/")) == "plain 1 "
    assert body(client.get("/plain/")) == "plain 1 "
    assert views.CALLS["plain"] == 1


def test_query_string_is_part_of_the_key_in_canonical_order(client: Client) -> None:
    assert body(client.get("/plain/?b=2&a=1")) == "plain 1 b=2&a=1"
    assert body(client.get("/plain/?a=1&b=2")) == "plain 1 b=2&a=1"  # same parameters
    assert body(client.get("/plain/?a=%31&b=2")) == "plain 1 b=2&a=1"  # same values
    assert body(client.get("/plain/?a=1&a=2")) == "plain 2 a=1&a=2"
    assert body(client.get("/plain/?a=2&a=1")) == "plain 3 a=2&a=1"  # getlist differs


def test_host_and_scheme_are_part_of_the_key(client: Client) -> None:
    assert body(client.get("/plain/", HTTP_HOST="localhost")) == "plain 1 "
    assert body(client.get("/plain/", HTTP_HOST="127.0.0.1")) == "plain 2 "
    assert body(client.get("/plain/", HTTP_HOST="localhost", secure=True)) == "plain 3 "
    assert body(client.get("/plain/", HTTP_HOST="localhost")) == "plain 1 "


def test_a_host_in_other_letter_case_is_another_page(client: Client) -> None:
    """The view may show the host as sent; the WSGI page cache keys it the same way."""
    assert body(client.get("/plain/", HTTP_HOST="localhost")) == "plain 1 "
    assert body(client.get("/plain/", HTTP_HOST="LocalHost")) == "plain 2 "


def test_key_func_replaces_the_url_part(client: Client) -> None:
    assert body(client.get("/by-path/?page=1")) == "by_path 1"
    assert body(client.get("/by-path/?page=2")) == "by_path 1"


@pytest.mark.parametrize(
    ("url", "view", "sweep"),
    [
        ("/tagged/", "tagged", lambda: cachesweeper.invalidate_tag("frontpage")),
        ("/news/", "news", lambda: cachesweeper.invalidate_tag("news")),
        ("/articles/", "list", lambda: Article.objects.create(title="new")),
        ("/articles/", "list", lambda: cachesweeper.invalidate_model(Article)),
        ("/class/", "class", lambda: cachesweeper.invalidate_tag("cbv")),
    ],
    ids=["tag", "versioned", "model-save", "invalidate_model", "class-based"],
)
def test_view_runs_again_after_a_sweep_of_each_kind(
    client: Client, url: str, view: str, sweep: object
) -> None:
    client.get(url)
    client.get(url)
    assert views.CALLS[view] == 1

    sweep()  # type: ignore[operator]

    client.get(url)
    assert views.CALLS[view] == 2
    client.get(url)
    assert views.CALLS[view] == 2


def test_a_model_instance_given_directly_as_tags(client: Client) -> None:
    article = Article.objects.create(pk=views.TAGGED_ARTICLE_PK, title="tagged")
    assert body(client.get("/instance-tag/")) == "instance 1"
    assert body(client.get("/instance-tag/")) == "instance 1"

    Article.objects.create(title="another article")  # sweeps Article, not this instance
    assert body(client.get("/instance-tag/")) == "instance 1"

    article.save()

    assert body(client.get("/instance-tag/")) == "instance 2"


@pytest.mark.parametrize(
    "sweep",
    [
        lambda: cachesweeper.invalidate_tag("sidebar"),
        lambda: cachesweeper.invalidate_model(Author),
    ],
    ids=["first-item", "second-item"],
)
def test_a_callable_in_tags_may_return_a_list(client: Client, sweep: Callable[[], None]) -> None:
    assert body(client.get("/listed-tags/")) == "listed 1"
    assert body(client.get("/listed-tags/")) == "listed 1"

    sweep()

    assert body(client.get("/listed-tags/")) == "listed 2"


def test_instance_tag_from_a_callable(client: Client) -> None:
    article = Article.objects.create(title="a")
    other = Article.objects.create(title="b")
    client.get(f"/article/{article.pk}/")
    client.get(f"/article/{other.pk}/")

    article.save()

    assert body(client.get(f"/article/{article.pk}/")) == f"article {article.pk} 3"
    assert body(client.get(f"/article/{other.pk}/")) == f"article {other.pk} 2"


def test_page_depends_on_the_fragments_it_rendered(client: Client) -> None:
    article = Article.objects.create(title="a")
    comment = Comment.objects.create(article=article, text="before")
    assert "before" in body(client.get(f"/fragment/{comment.pk}/"))
    assert "before" in body(client.get(f"/fragment/{comment.pk}/"))
    assert views.CALLS["with_fragment"] == 1

    comment.text = "after"
    comment.save()

    assert "after" in body(client.get(f"/fragment/{comment.pk}/"))
    assert views.CALLS["with_fragment"] == 2


def test_post_is_never_served_from_or_stored_in_the_cache(client: Client) -> None:
    client.get("/plain/")
    assert body(client.post("/plain/")) == "plain 2 "
    assert body(client.post("/plain/")) == "plain 3 "
    assert body(client.get("/plain/")) == "plain 1 "


def test_head_is_answered_from_a_get_entry_but_never_stored(client: Client) -> None:
    client.head("/plain/")
    assert views.CALLS["plain"] == 1
    # The HEAD response was not stored: the next GET runs the view.
    assert body(client.get("/plain/")) == "plain 2 "

    status, headers, content = wsgi("HEAD", "/plain/")

    assert status == "200 OK" and content == b""  # the stored body is not sent
    assert headers["Content-Length"] == str(len("plain 2 "))
    assert views.CALLS["plain"] == 2
    assert body(client.get("/plain/")) == "plain 2 "


@pytest.mark.parametrize(
    ("url", "view"),
    [
        ("/cookie/", "cookie"),
        ("/private-header/", "private_header"),
        ("/no-store/", "no_store"),
        ("/no-cache/", "no_cache"),
        ("/vary-cookie/", "vary_cookie"),
        ("/vary-star/", "vary_star"),
        ("/session/", "session"),
        ("/csrf/", "csrf"),
        ("/streaming/", "streaming"),
        ("/status/404/", "status404"),
        ("/status/500/", "status500"),
        ("/status/302/", "status302"),
        ("/opts-out/", "opts_out"),
        ("/only-if/?preview=1", "only_if"),
    ],
)
def test_responses_that_must_not_be_shared_are_never_stored(
    client: Client, url: str, view: str
) -> None:
    first = client.get(url)
    second = client.get(url)
    assert views.CALLS[view] == 2
    assert first.status_code == second.status_code


def test_set_cookie_reaches_the_client(client: Client) -> None:
    response = client.get("/cookie/")
    assert response.cookies["flavour"].value == "oatmeal"


def test_only_if_true_caches(client: Client) -> None:
    client.get("/only-if/")
    client.get("/only-if/")
    assert views.CALLS["only_if"] == 1


def test_session_is_not_loaded_for_visitors_without_a_session_cookie(client: Client) -> None:
    response = client.get("/plain/")
    assert not response.has_header("Vary") or "Cookie" not in response["Vary"]
    assert "sessionid" not in response.cookies


def test_logged_in_users_never_share_a_public_page(client: Client) -> None:
    User.objects.create_user("ann", password="pw")
    assert body(client.get("/plain/")) == "plain 1 "  # anonymous: stored
    client.login(username="ann", password="pw")

    # Logged in: neither served the shared page nor stored.
    assert body(client.get("/plain/")) == "plain 2 "
    assert body(client.get("/plain/")) == "plain 3 "
    client.logout()
    assert body(client.get("/plain/")) == "plain 1 "


def test_an_anonymous_page_that_reads_the_user_is_shared(client: Client) -> None:
    # Reading request.user reads the empty session: every visitor without one gets it.
    first = client.get("/whoami/")
    assert body(first) == "anonymous 1"
    assert "Cookie" in first["Vary"]  # SessionMiddleware's, kept for browsers and edges
    again = Client().get("/whoami/")
    assert body(again) == "anonymous 1"
    assert "Cookie" in again["Vary"]  # a hit says so too


def test_a_page_that_read_an_empty_session_is_not_served_to_visitors_with_one(
    client: Client,
) -> None:
    assert body(client.get("/whoami/")) == "anonymous 1"
    with_session = Client()
    session = with_session.session
    session["cart"] = 1
    session.save()
    assert with_session.cookies[settings.SESSION_COOKIE_NAME].value
    assert body(with_session.get("/whoami/")) == "anonymous 2"
    assert body(with_session.get("/whoami/")) == "anonymous 3"  # nor stored for them
    with_messages = Client()
    with_messages.cookies["messages"] = "pending"
    assert body(with_messages.get("/whoami/")) == "anonymous 4"
    assert body(client.get("/whoami/")) == "anonymous 1"


def test_private_cacheability_keeps_users_apart(client: Client) -> None:
    User.objects.create_user("ann", password="pw")
    User.objects.create_user("bob", password="pw")
    ann, bob = Client(), Client()
    ann.login(username="ann", password="pw")
    bob.login(username="bob", password="pw")

    assert body(ann.get("/private/")) == "ann 1"
    assert body(bob.get("/private/")) == "bob 2"
    assert body(ann.get("/private/")) == "ann 1"
    assert body(bob.get("/private/")) == "bob 2"
    assert body(client.get("/private/")) == "anonymous 3"
    assert "private" in ann.get("/private/")["Cache-Control"]


def test_if_none_match_gets_304_without_running_the_view(client: Client) -> None:
    etag = client.get("/plain/")["ETag"]
    assert etag.startswith('"cs-')

    response = client.get("/plain/", HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304
    assert views.CALLS["plain"] == 1
    cachesweeper.invalidate_model(Article)  # unrelated: still 304
    assert client.get("/plain/", HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_etag_changes_when_the_page_is_swept(client: Client) -> None:
    etag = client.get("/tagged/")["ETag"]
    cachesweeper.invalidate_tag("frontpage")
    response = client.get("/tagged/", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag


def test_etag_follows_the_tokens_even_for_pages_stored_at_the_same_instant(
    client: Client, clock: Clock
) -> None:
    clock.frozen = time.time()  # only the swept token can tell the two renders apart
    old = client.get("/tagged/")["ETag"]

    cachesweeper.invalidate_tag("frontpage")

    swept = client.get("/tagged/", HTTP_IF_NONE_MATCH=old)
    assert (swept.status_code, body(swept)) == (200, "tagged 2")
    assert swept["ETag"] != old
    # Now served from the cache: the old ETag still gets the new page in full.
    again = client.get("/tagged/", HTTP_IF_NONE_MATCH=old)
    assert (again.status_code, body(again)) == (200, "tagged 2")
    assert client.get("/tagged/", HTTP_IF_NONE_MATCH=swept["ETag"]).status_code == 304
    assert views.CALLS["tagged"] == 2


def test_bytes_and_headers_are_stored_faithfully(client: Client) -> None:
    first = client.get("/binary/")
    second = client.get("/binary/")
    assert views.CALLS["binary"] == 1
    assert second.content == bytes(range(256)) * 4
    for header in ("Content-Type", "Content-Disposition", "X-Custom", "Link", "ETag"):
        assert second[header] == first[header]


def test_age_is_how_long_ago_the_page_was_stored(client: Client, clock: Clock) -> None:
    client.get("/binary/")
    assert int(client.get("/binary/")["Age"]) <= 1

    clock.offset = 5  # five seconds later

    assert 5 <= int(client.get("/binary/")["Age"]) <= 6
    assert views.CALLS["binary"] == 1


def test_vary_headers_separate_variants(client: Client) -> None:
    assert body(client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="en")) == "en 1"
    assert body(client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="fr")) == "fr 2"
    assert body(client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="en")) == "en 1"
    assert body(client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="fr")) == "fr 2"


def test_vary_is_learnt_from_the_cache_by_a_new_process(client: Client) -> None:
    from cachesweeper import pages

    client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="en")
    pages._vary_known.clear()  # as in another worker process

    assert body(client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="fr")) == "fr 2"
    assert body(client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE="en")) == "en 1"


def test_cacheable_statuses_are_configurable(client: Client) -> None:
    with override_settings(CACHESWEEPER={"CACHEABLE_STATUSES": [200, 404]}):
        client.get("/status/404/")
        client.get("/status/404/")
    assert views.CALLS["status404"] == 1


def test_async_view(client: Client) -> None:
    assert body(client.get("/async/")) == "async 1"
    assert body(client.get("/async/")) == "async 1"


def test_hit_is_one_round_trip(client: Client) -> None:
    from tests.helpers import calls, reset

    client.get("/tagged/")
    reset()
    client.get("/tagged/")
    assert calls() == ["get_many"]


def test_bad_cacheability_is_refused() -> None:
    with pytest.raises(ValueError, match="cacheability"):
        cachesweeper.cache_page(60, cacheability="shared")


def test_key_helpers() -> None:
    from django.test import RequestFactory

    from cachesweeper.pages import path_and_query_key, path_key, query_key

    request = RequestFactory().get("/a/b/", {"y": "2", "x": "1"})
    assert path_key(request) == "/a/b/"
    assert query_key(request) == "x=1&y=2"
    assert path_and_query_key(request) == "/a/b/?x=1&y=2"


def test_async_view_for_a_logged_in_visitor_is_rendered_and_not_shared(client: Client) -> None:
    """The session behind the cookie is loaded off the event loop; the page is not shared."""
    User.objects.create_user("ann", password="pw")
    assert body(client.get("/async/")) == "async 1"  # anonymous: stored
    client.login(username="ann", password="pw")
    cookies = client.cookies

    async def logged_in() -> list[str]:
        visitor = AsyncClient()
        visitor.cookies = cookies
        return [body(await visitor.get("/async/")) for _ in range(2)]

    assert contextvars.Context().run(async_to_sync(logged_in)) == ["async 2", "async 3"]
    assert body(Client().get("/async/")) == "async 1"
