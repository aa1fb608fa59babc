"""Personal responses never reach a shared cache, whatever the view does (fuzzed).

Hypothesis picks a layer (``cache_page``, the site-wide ``PageCacheMiddleware``,
the WSGI page cache, or ``edge_cache`` behind ``EdgeMiddleware`` with
LiteSpeed), a visitor (anonymous, logged in, anonymous with a session, a
bearer token, a pending flash message, a CSRF cookie) and what the view does
(read the user, set a cookie, use a CSRF token, write the session, show the
visitor's messages, ``Vary: Cookie``, ``Cache-Control: private`` /
``no-store``). Then a stranger (no cookies) asks for the same URL: if the
first page holds the visitor's data, or the documented rules say it must not
be shared, the stranger gets a fresh page, and the edge was not told to keep
it. The Django layers judge by what the request touched; the WSGI layer,
outside Django, only by what HTTP shows (session cookie, Authorization,
``Set-Cookie``, ``Vary``, ``Cache-Control``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client, override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cachesweeper.edges.litespeed import CONTROL_HEADER, TAG_HEADER
from cachesweeper.wsgi import PageCacheMiddleware as WSGIPageCache
from tests.reliability.figures import record
from tests.reliability.views import PERSONAL_ACTIONS

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

BASE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
LAYERS = {
    "cache_page": ("/personal/cached/", BASE_MIDDLEWARE),
    "site-wide": (
        "/personal/plain/",
        [*BASE_MIDDLEWARE, "cachesweeper.middleware.PageCacheMiddleware"],
    ),
    "wsgi": ("/personal/plain/", BASE_MIDDLEWARE),
    "edge": ("/personal/edge/", ["cachesweeper.middleware.EdgeMiddleware", *BASE_MIDDLEWARE]),
}
VISITORS = (
    "anonymous",  # no cookies at all
    "logged in",  # a session, authenticated
    "session only",  # a session, not logged in
    "bearer token",  # an Authorization header
    "pending message",  # a messages cookie left by the previous page
    "csrf cookie",  # a CSRF cookie from an earlier form
)
#: Visitors whose pages the library never shares, whatever the view does.
NEVER_SHARED = frozenset({"logged in", "session only", "bearer token"})
#: What makes a page personal for the Django layers (they see the request's state).
PERSONAL_IN_DJANGO = frozenset(PERSONAL_ACTIONS) - {"user"}
#: What makes it personal in HTTP terms, all the WSGI layer can see.
PERSONAL_IN_HTTP = frozenset(PERSONAL_ACTIONS) - {"messages"}
#: Markers of the visitor's own data in a page (see ``views.personal``).
PERSONAL_DATA = ("user=alice", "csrf=", "seen=", "for-you-")

Result = tuple[int, dict[str, str], str]


def shared_cacheable(cache_control: str) -> bool:
    """Whether ``Cache-Control`` lets a shared cache keep the response (RFC 9111)."""
    directives = {part.split("=")[0].strip().lower() for part in cache_control.split(",")}
    if directives & {"private", "no-store", "no-cache"}:
        return False
    return bool(directives & {"public", "s-maxage", "max-age"})


def must_not_share(layer: str, visitor: str, actions: set[str]) -> bool:
    """The documented rules: when the stranger must not get the first visitor's page."""
    if visitor in NEVER_SHARED:
        return True
    if layer == "wsgi":
        return bool(actions & PERSONAL_IN_HTTP) or (
            visitor == "pending message" and "messages" in actions  # the cookie is cleared
        )
    if visitor != "pending message":
        # Reading messages when there are none shows nothing personal: every
        # visitor without messages gets the same page.
        actions = actions - {"messages"}
    return bool(actions & PERSONAL_IN_DJANGO)


class Site:
    """The suite's Django project behind each layer, asked as each visitor."""

    def __init__(self) -> None:
        user = User.objects.create_user("alice", password="x")
        self.logged_in = Client()
        self.logged_in.force_login(user)
        self.with_session = Client()
        session = self.with_session.session
        session["cart"] = 1
        session.save()
        self.with_csrf = Client()
        self.with_csrf.get("/personal/plain/?do=csrf")
        assert "csrftoken" in self.with_csrf.cookies
        self.wsgi = WSGIPageCache(WSGIHandler(), [("/personal/plain", 300, 0)], "default")

    def environ(self, visitor: str) -> dict[str, str]:
        if visitor == "bearer token":
            return {"HTTP_AUTHORIZATION": "Bearer alice-token"}
        if visitor == "pending message":
            client = Client()
            client.get("/personal/flash/")
            assert "messages" in client.cookies
        else:
            client = {
                "logged in": self.logged_in,
                "session only": self.with_session,
                "csrf cookie": self.with_csrf,
            }.get(visitor, Client())
        cookie = "; ".join(f"{key}={morsel.value}" for key, morsel in client.cookies.items())
        return {"HTTP_COOKIE": cookie} if cookie else {}

    def get(self, layer: str, visitor: str, query: str) -> Result:
        path, _ = LAYERS[layer]
        environ = self.environ(visitor)
        if layer == "wsgi":
            return self._wsgi(path, query, environ)
        response = Client().get(f"{path}?{query}", **environ)  # type: ignore[arg-type]
        return response.status_code, dict(response.items()), response.content.decode()

    def _wsgi(self, path: str, query: str, extra: dict[str, str]) -> Result:
        environ: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": query, **extra}
        setup_testing_defaults(environ)
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
            captured["status"], captured["headers"] = int(status[:3]), dict(headers)

        body = b"".join(self.wsgi(environ, start_response)).decode()
        return captured["status"], captured["headers"], body


@pytest.fixture
def site() -> Iterator[Site]:
    with override_settings(
        ROOT_URLCONF="tests.reliability.views",
        MIDDLEWARE=BASE_MIDDLEWARE,
        CACHESWEEPER={
            "PAGE_RULES": [("/personal/plain", 300, 0)],
            "EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed"}],
        },
    ):
        yield Site()


def test_personal_responses_never_reach_a_shared_cache(site: Site) -> None:
    tally: Counter[str] = Counter()

    @FUZZ
    @given(
        layer=st.sampled_from(sorted(LAYERS)),
        visitor=st.one_of(st.just("anonymous"), st.sampled_from(VISITORS)),
        actions=st.one_of(
            st.just(set()),
            st.sets(st.sampled_from(PERSONAL_ACTIONS), max_size=2),
            st.sets(st.sampled_from(PERSONAL_ACTIONS)),
        ),
    )
    @example(layer="wsgi", visitor="pending message", actions={"messages"})
    @example(layer="cache_page", visitor="csrf cookie", actions={"csrf"})
    def check(layer: str, visitor: str, actions: set[str]) -> None:
        caches["default"].clear()
        query = "&".join(f"do={action}" for action in sorted(actions))
        with override_settings(MIDDLEWARE=LAYERS[layer][1]):
            status, headers, body = site.get(layer, visitor, query)
            stranger_status, _, stranger_body = site.get(layer, "anonymous", query)
        assert status == stranger_status == 200
        tally["examples"] += 1
        tally["requests"] += 2
        personal_data = any(marker in body for marker in PERSONAL_DATA)
        private = must_not_share(layer, visitor, actions)
        tally["personal"] += personal_data or private
        if layer == "edge":
            control = headers.get(CONTROL_HEADER, "")
            if personal_data or private:
                assert not control.startswith("public") and TAG_HEADER not in headers
                tally["kept_out"] += 1
            elif visitor == "anonymous" and not actions:
                assert control.startswith("public")  # the check can tell the two apart
                tally["public_shared"] += 1
            return
        if personal_data or private:
            assert stranger_body != body, f"{layer}: a stranger got the {visitor} visitor's page"
            tally["kept_out"] += 1
        elif visitor == "anonymous" and not actions:
            assert stranger_body == body  # a plain public page is shared: the check works
            tally["public_shared"] += 1

    check()
    record(
        "privacy[4 layers x 6 visitors x 8 view behaviours]",
        examples=tally["examples"],
        requests=tally["requests"],
        personal_responses=tally["personal"],
        kept_out=tally["kept_out"],
        leaked=0,
        public_pages_shared=tally["public_shared"],
    )


def test_personal_responses_under_edge_cache_do_not_invite_other_shared_caches(
    site: Site,
) -> None:
    @FUZZ
    @given(
        visitor=st.sampled_from(sorted(NEVER_SHARED)),
        actions=st.sets(st.sampled_from(sorted(set(PERSONAL_ACTIONS) - {"private", "no-store"}))),
    )
    @example(visitor="logged in", actions=set())
    @example(visitor="bearer token", actions=set())
    def check(visitor: str, actions: set[str]) -> None:
        query = "&".join(f"do={action}" for action in sorted(actions))
        with override_settings(MIDDLEWARE=LAYERS["edge"][1]):
            status, headers, _ = site.get("edge", visitor, query)
        assert status == 200
        if shared_cacheable(headers.get("Cache-Control", "")) and "Cookie" not in headers.get(
            "Vary", ""
        ):
            record(
                "privacy[edge_cache, Cache-Control of personal responses]",
                visitor=visitor,
                actions=sorted(actions),
                cache_control=headers.get("Cache-Control"),
                vary=headers.get("Vary", ""),
            )
        assert not shared_cacheable(headers.get("Cache-Control", "")), headers

    check()
