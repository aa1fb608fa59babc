"""Holes as ESI includes, end to end through a real ``varnishd`` running the shipped VCL.

The Varnish edge has ``esi=True``: a page with a CSRF form in a hole is
fetched from Django once and kept by Varnish for every anonymous visitor;
each visitor's hole comes from ``cachesweeper.urls``, rendered for them. The
shipped VCL gives a visitor without a CSRF cookie one minted by Django, so
their POST passes Django's CSRF check through Varnish.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import pytest
from django.core.cache import caches
from django.test import override_settings

import cachesweeper
from tests.edges.test_varnish import PUBLIC_HOST, behind_varnish, raw_purge
from tests.edges.test_varnish import Site as VarnishSite
from tests.servers import LOOPBACK, need_binary, need_vmod

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
INCLUDE = re.compile(r'<esi:include src="([^"]+)"/>')


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def token(self) -> str:
        found = TOKEN.search(self.body)
        assert found, self.body
        return found.group(1)


@dataclass
class Visitor:
    """A browser of one: keeps the cookies it is given, talks to one server."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: str = "", **headers: str) -> Answer:
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
        sent = {"Host": PUBLIC_HOST, **headers}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read().decode())
        finally:
            connection.close()
        for line in answer.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return answer

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, **headers)

    def post(self, path: str, token: str) -> Answer:
        return self.request("POST", path, f"csrfmiddlewaretoken={token}", Referer="")


class Site(VarnishSite):
    """The Varnish test site, with visitors that keep their cookies."""

    def visitor(self) -> Visitor:
        """A first-time visitor, through Varnish."""
        return Visitor(self.varnish.port)

    def direct(self) -> Visitor:
        """A visitor talking to Django itself."""
        return Visitor(self.backend_port)


@pytest.fixture(scope="module")
def site(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One varnishd and one live server for the module (see ``test_varnish.site``)."""
    need_binary("varnishd")
    need_vmod("xkey")
    need_vmod("header")
    from django.conf import settings

    with behind_varnish(
        tmp_path_factory.mktemp("vcl"),
        MIDDLEWARE=[
            "cachesweeper.middleware.EdgeMiddleware",
            "tests.edges.esi_site.CountFetches",
            *settings.MIDDLEWARE,
        ],
        ROOT_URLCONF="tests.edges.esi_site",
        ALLOWED_HOSTS=[PUBLIC_HOST, LOOPBACK, "localhost"],
        STATIC_URL="/static/",
    ) as (varnish, port):
        yield Site(varnish, port)


@pytest.fixture
def fresh(
    site: Site, transactional_db: None, cache_backend: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    """An empty Varnish, page cache, purge queue and counters for each test."""
    from cachesweeper.edges import queue
    from tests.edges.esi_site import CALLS, FETCHES

    monkeypatch.setattr(queue, "FIRST_DELAY", 0.2)
    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())
    assert raw_purge(site.varnish, X_Purge_All="1") == 200
    caches["default"].clear()
    FETCHES.clear()
    CALLS.clear()
    yield site
    queue.purges.flush(10)


def flush() -> None:
    from cachesweeper.edges import queue

    assert queue.purges.flush(10), "purges were not delivered"


pytestmark = [
    pytest.mark.servers,
    pytest.mark.parametrize("cache_backend", ["locmem", "redis"], indirect=True),
]


@pytest.mark.parametrize("path", ["/page/", "/fragment/"])
def test_varnish_keeps_one_page_and_every_visitor_gets_a_valid_token(
    fresh: Site, path: str
) -> None:
    from tests.edges.esi_site import FETCHES

    with override_settings(CACHESWEEPER=fresh.edges(esi=True)):
        ann, bob = fresh.visitor(), fresh.visitor()
        first, second = ann.get(path), bob.get(path)

        assert FETCHES[path] == 1  # one backend fetch of the page, for both
        assert (first.status, second.status) == (200, 200)
        assert "<esi:include" not in first.body + second.body  # assembled by Varnish
        assert first.token != second.token
        for visitor, page in ((ann, first), (bob, second)):
            assert "csrftoken" in visitor.cookies  # minted by Django, delivered by Varnish
            assert page.header("Cache-Control") is not None
            assert "private" in page.header("Cache-Control")  # assembled: theirs
            assert page.header("ETag") is None
            assert page.header("X-Cachesweeper-Csrf-Cookie") is None  # stripped
            assert visitor.post("/vote/", page.token).body == "voted"
        assert ann.post("/vote/", second.token).status == 403  # not Ann's cookie


def test_the_page_django_sends_to_varnish_is_public_tagged_and_has_includes(
    fresh: Site,
) -> None:
    with override_settings(CACHESWEEPER=fresh.edges(esi=True)):
        page = fresh.direct().get("/page/", **{"Surrogate-Capability": 'x="ESI/1.0"'})
    assert page.status == 200
    assert "csrfmiddlewaretoken" not in page.body
    assert len(INCLUDE.findall(page.body)) == 2
    assert all(src.startswith("/_cachesweeper/hole/") for src in INCLUDE.findall(page.body))
    assert page.header("Surrogate-Control") == 'content="ESI/1.0"'
    assert "private" not in (page.header("Cache-Control") or "")
    assert "s-maxage=60" in (page.header("Cache-Control") or "")
    assert "esi-page" in (page.header("xkey") or "").split(" ")
    assert page.header("X-Cachesweeper-Csrf-Cookie") == "csrftoken"
    assert page.header("X-Cachesweeper-Csrf-Url") == "/_cachesweeper/csrf/"
    assert page.header("Set-Cookie") is None


@pytest.mark.parametrize("path", ["/page/", "/page-reading-user/", "/fragment/"])
def test_a_returning_visitor_gets_the_cached_page_and_keeps_their_cookie(
    fresh: Site, path: str
) -> None:
    """Only the CSRF cookie: looked up as a visitor without cookies (see the VCL)."""
    from tests.edges.esi_site import FETCHES

    with override_settings(CACHESWEEPER=fresh.edges(esi=True)):
        bob, cy, ann = fresh.visitor(), fresh.visitor(), fresh.visitor()
        bob.cookies["csrftoken"] = "b" * 32  # returning visitors Varnish has not seen
        cy.cookies["csrftoken"] = "c" * 32
        pages = [bob.get(path), cy.get(path), bob.get(path)]  # the first one fetches it
        assert [page.header("X-Cache") for page in pages] == ["MISS", "HIT", "HIT"]
        assert cy.post("/vote/", pages[1].token).body == "voted"
        assert bob.post("/vote/", pages[2].token).body == "voted"

        ann.get(path)  # a first-time visitor gets the same copy, and a cookie
        cookie = ann.cookies["csrftoken"]
        again = ann.get(path)
        assert (again.header("X-Cache"), again.header("Set-Cookie")) == ("HIT", None)
        assert ann.cookies["csrftoken"] == cookie
        assert ann.post("/vote/", again.token).body == "voted"
        assert FETCHES[path] == 1
        assert (bob.cookies["csrftoken"], cy.cookies["csrftoken"]) == ("b" * 32, "c" * 32)


def test_a_sweep_purges_the_page_and_holes_are_never_cached(fresh: Site) -> None:
    from tests.edges.esi_site import FETCHES

    with override_settings(CACHESWEEPER=fresh.edges(esi=True)):
        fresh.visitor().get("/page/")
        fresh.visitor().get("/page/")
        assert FETCHES["/page/"] == 1
        holes = sum(count for path, count in FETCHES.items() if "/hole/" in path)
        assert holes == 4  # two holes, two visitors: every one from Django

        cachesweeper.invalidate_tag("esi-page")
        flush()
        page = fresh.visitor().get("/page/")
        assert FETCHES["/page/"] == 2  # purged: fetched again
        assert "rendered 2" in page.body and TOKEN.search(page.body)


def test_hole_answers_are_private_and_forged_references_get_400(fresh: Site) -> None:
    with override_settings(CACHESWEEPER=fresh.edges(esi=True)):
        page = fresh.direct().get("/page/", **{"Surrogate-Capability": 'x="ESI/1.0"'})
        form, comment = INCLUDE.findall(page.body)
        hole = fresh.visitor().get(form)
        assert hole.status == 200 and TOKEN.search(hole.body)
        assert hole.header("Cache-Control") == "private, no-store"
        assert fresh.visitor().get(comment).body == "hole for comment 7"

        reference = comment.split("/")[-2]
        value, signature = reference.rsplit(":", 1)
        tampered = f"/_cachesweeper/hole/{value[:-2]}xx:{signature}/"
        forged = "/_cachesweeper/hole/W1siaG9sZSIsbnVsbCx7fV0:bad/"
        for bad in (tampered, forged, "/_cachesweeper/hole/nothing/"):
            answer = fresh.visitor().get(bad)
            assert answer.status == 400
            assert "private" in (answer.header("Cache-Control") or "")
            assert "hole for" not in answer.body


def test_without_esi_the_page_is_filled_private_and_not_shared(fresh: Site) -> None:
    from tests.edges.esi_site import FETCHES

    with override_settings(CACHESWEEPER=fresh.edges()):
        ann, bob = fresh.visitor(), fresh.visitor()
        first, second = ann.get("/page/"), bob.get("/page/")
        assert FETCHES["/page/"] == 2  # Varnish did not keep it
        assert not any("/hole/" in path for path in FETCHES)
        assert first.token != second.token
        assert "private" in (first.header("Cache-Control") or "")
        assert ann.post("/vote/", first.token).body == "voted"

        # Back with only the CSRF cookie: looked up as cookieless, missed, and Django
        # still sees the cookie (the same one, and the token is for it).
        cookie = ann.cookies["csrftoken"]
        again = ann.get("/page/")
        assert again.header("X-Cache") == "MISS"
        assert ann.cookies["csrftoken"] == cookie
        assert ann.post("/vote/", again.token).body == "voted"
    assert FETCHES["/page/"] == 3
