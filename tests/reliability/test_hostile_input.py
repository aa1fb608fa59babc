"""Hostile input, fuzzed with Hypothesis: it never breaks a page, a key, a header or a user.

* vary-on values and tag names (unicode, control characters, separators, 10 KB):
  the tag never raises, the keys are valid (LocMem with ``CacheKeyWarning`` as
  an error, and real memcached, whose client refuses bad keys), the entry is
  really stored and served, and a sweep of that tag really reaches it;
* dependency names are header-safe and lossless (two tags, one name: never);
* requests with hostile paths, query strings, hosts and headers never get a
  5xx and always get *their own* page;
* tags and sweeps taken from the request never inject a header (LiteSpeed);
* private pages (``cacheability="private"``) are never served to another user.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.cache.backends.base import CacheKeyWarning
from django.template import engines
from django.test import Client, override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cachesweeper
from cachesweeper.dependencies import encode, name_of, tag_name
from cachesweeper.edges.base import check_name, purge_names
from cachesweeper.edges.litespeed import CONTROL_HEADER, PURGE_HEADER, TAG_HEADER
from tests.reliability.figures import record
from tests.testapp.models import Article

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Text as hostile as Python strings get: any code point (lone surrogates, NUL,
#: CR/LF, separators), sometimes repeated into kilobytes.
hostile = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=" \t\r\n\x00\x7f,;:=&%?#/\\\"'<>{}|*", max_size=20),
    st.builds(
        lambda text, times: text * times, st.text(min_size=1, max_size=8), st.integers(300, 1500)
    ),
)
#: What can travel in an HTTP header or a URL: no lone surrogates.
http_text = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet=" \t,;:=&%?#/\\\"'<>{}|*+", max_size=20),
    st.builds(
        lambda text, times: text * times,
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
        st.integers(100, 800),
    ),
)


class Failures(logging.Handler):
    """Warnings and errors the library logged (a fail-open would hide a bad key)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def failures() -> Iterator[Failures]:
    handler = Failures()
    logger = logging.getLogger("cachesweeper")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


class Runs:
    """``{{ runs.next }}``: a new number each time the fragment body really renders."""

    def __init__(self) -> None:
        self.count = 0

    @property
    def next(self) -> int:
        self.count += 1
        return self.count


FRAGMENT = engines["django"].from_string(
    "{% load cachesweeper %}{% cachesweeper tag 600 a b %}{{ runs.next }}{% endcachesweeper %}"
)

# -- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_backend", ["locmem", "memcached"], indirect=True)
def test_hostile_tags_and_vary_on_values_give_working_entries(
    cache_backend: str, failures: Failures
) -> None:
    examples = {"count": 0}

    @FUZZ
    @given(tag=hostile, other=hostile, a=hostile, b=st.one_of(hostile, st.integers(), st.none()))
    def check(tag: str, other: str, a: str, b: Any) -> None:
        examples["count"] += 1
        caches["default"].clear()
        failures.messages.clear()
        runs = Runs()
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheKeyWarning)
            first = FRAGMENT.render({"tag": tag, "a": a, "b": b, "runs": runs})
            second = FRAGMENT.render({"tag": tag, "a": a, "b": b, "runs": runs})
            cachesweeper.invalidate_tag(tag)
            third = FRAGMENT.render({"tag": tag, "a": a, "b": b, "runs": runs})
            if other != tag:  # another tag, same vary-on: its own entry
                fourth = FRAGMENT.render({"tag": other, "a": a, "b": b, "runs": runs})
                assert fourth == "3"
        assert failures.messages == []  # no key made the cache "fail"
        assert (first, second, third) == ("1", "1", "2")  # stored, served, swept

    check()
    record(
        f"hostile[tags and vary-on, {cache_backend}]",
        examples=examples["count"],
        exceptions=0,
        invalid_keys=0,
        missed_sweeps=0,
    )


@settings(max_examples=500, deadline=None)
@given(first=st.text(), second=st.text(), pk=st.text())
def test_dependency_names_are_header_safe_and_lossless(first: str, second: str, pk: str) -> None:
    for name in (tag_name(first), tag_name(second), name_of(Article(pk=pk))):
        assert check_name(name) == name
        assert name.isascii() and len(name.split()) == 1
    if first != second:
        assert tag_name(first) != tag_name(second)


# -- requests -----------------------------------------------------------------------------

HOSTS = ["a.example", "A.EXAMPLE", "b.example:8080", "b.example", "xn--bcher-kva.example"]
#: Any host Django accepts (labels of letters, digits and hyphens, an optional port),
#: beside the lookalikes above, so that two hosts never share a page by accident.
hosts = st.one_of(
    st.sampled_from(HOSTS),
    st.from_regex(r"\A[A-Za-z0-9-]{1,12}(\.[A-Za-z0-9-]{1,12}){0,3}(:[0-9]{1,5})?\Z"),
)


@pytest.fixture
def site() -> Iterator[Client]:
    with override_settings(ROOT_URLCONF="tests.reliability.views", ALLOWED_HOSTS=["*"]):
        caches["default"].clear()
        yield Client()


def get(client: Client, path: str, query: str, host: str, language: str | None) -> Any:
    headers = {"HTTP_HOST": host}
    if language is not None:
        headers["HTTP_ACCEPT_LANGUAGE"] = language
    return client.get(f"{path}?{query}" if query else path, **headers)  # type: ignore[arg-type]


pairs = st.lists(st.tuples(http_text, http_text), max_size=5)


@pytest.mark.django_db(transaction=True)
def test_hostile_requests_never_fail_and_always_get_their_own_page(site: Client) -> None:
    examples = {"count": 0}

    @FUZZ
    @given(
        rest=http_text,
        query=pairs,
        host=hosts,
        language=st.one_of(st.none(), http_text),
        shuffle=st.randoms(use_true_random=False),
    )
    def check(
        rest: str, query: list[tuple[str, str]], host: str, language: str | None, shuffle: Any
    ) -> None:
        examples["count"] += 1
        path = quote(rest, safe="")
        reordered = list(query)
        shuffle.shuffle(reordered)
        # The request twice (stored, then served), then its parameters in another
        # order (the same page, unless a repeated name's values changed order):
        # every answer must be what the uncached view says for that very request.
        for candidate in (urlencode(query), urlencode(query), urlencode(reordered)):
            expected = get(site, f"/echo/{path}", candidate, host, language)
            assert expected.status_code == 200
            response = get(site, f"/cached/{path}", candidate, host, language)
            assert response.status_code == 200
            assert response.content == expected.content

    check()
    record(
        "hostile[requests through cache_page]",
        examples=examples["count"],
        errors_5xx=0,
        wrong_page=0,
    )


def merged(query: list[tuple[str, str]], how: str) -> tuple[str, str]:
    """Two query strings that mean different things but join alike when unescaped."""
    (name, value), (name2, value2) = query[0], query[1]
    if how == "ampersand":  # a=1&b=2  vs  a=<1&b=2>
        return urlencode([(name, value), (name2, value2)]), urlencode(
            [(name, f"{value}&{name2}={value2}")]
        )
    if how == "equals":  # a=b=c: name "a", value "b=c"  vs  name "a=b", value "c"
        return urlencode([(name, f"{value}={value2}")]), urlencode([(f"{name}={value}", value2)])
    return urlencode([(name, "\n")]), urlencode([(name, "%0A")])  # newline vs its escape


@pytest.mark.django_db(transaction=True)
def test_query_strings_that_mean_different_things_never_share_a_page(site: Client) -> None:
    @FUZZ
    @given(
        query=st.lists(
            st.tuples(st.text("abc", min_size=1, max_size=3), st.text("xyz1", max_size=3)),
            min_size=2,
            max_size=2,
        ),
        how=st.sampled_from(["ampersand", "equals", "newline"]),
    )
    @example(query=[("a", "1"), ("b", "2")], how="ampersand")
    def check(query: list[tuple[str, str]], how: str) -> None:
        caches["default"].clear()
        for order in ((0, 1), (1, 0)):
            caches["default"].clear()
            strings = merged(query, how)
            for index in order:
                expected = get(site, "/echo/", strings[index], "a.example", None).content
                served = get(site, "/cached/", strings[index], "a.example", None).content
                if served != expected:
                    record(
                        "hostile[query strings with different meanings]",
                        collision=f"?{strings[0]} and ?{strings[1]}",
                    )
                assert served == expected

    check()


def test_the_wsgi_page_cache_keeps_query_strings_with_different_meanings_apart() -> None:
    from urllib.parse import parse_qsl
    from wsgiref.util import setup_testing_defaults

    from cachesweeper.wsgi import PageCacheMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(parse_qsl(environ["QUERY_STRING"], keep_blank_values=True)).encode()]

    caches["default"].clear()
    cached = PageCacheMiddleware(app, [("/", 60, 0)], "default")
    bodies = []
    for query in ("a=1%26b%3D2", "a=1&b=2"):
        environ: dict[str, Any] = {"PATH_INFO": "/page", "QUERY_STRING": query}
        setup_testing_defaults(environ)
        bodies.append(b"".join(cached(environ, lambda status, headers, exc=None: None)))
    assert bodies == [b"[('a', '1&b=2')]", b"[('a', '1'), ('b', '2')]"]


@pytest.mark.django_db(transaction=True)
def test_tags_and_sweeps_from_the_request_never_inject_a_header(site: Client) -> None:
    examples = {"count": 0}
    edge = {"EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed"}]}
    middleware = ["cachesweeper.middleware.EdgeMiddleware"]

    @FUZZ
    @given(tag=http_text, more=st.lists(http_text, max_size=3))
    def check(tag: str, more: list[str]) -> None:
        examples["count"] += 1
        tagged = site.get("/edge/tag/", {"tag": tag})
        swept = site.get("/edge/sweep/", {"tag": [tag, *more]})
        for response in (tagged, swept):
            assert response.status_code == 200
            for name, value in response.items():
                assert not set(name + value) & {"\r", "\n", "\x00"}
                value.encode("latin-1")
        if tagged.has_header(TAG_HEADER):
            sent = tagged[TAG_HEADER].split(",")
            assert all(each == each.strip() and check_name(each) for each in sent)
            # A sweep of the tag purges this response (its exact tag, or the coarse
            # one a long header falls back to: a wider purge, never a missed one).
            assert set(purge_names([tag_name(tag)])) & set(sent)
        else:  # too long to send: kept out of the edge rather than cached unpurgeable
            assert len(tag_name(tag)) > 8000
            assert tagged[CONTROL_HEADER] == "no-cache"
        purged = [part.strip() for part in swept[PURGE_HEADER].split(",")]
        assert purged[0] == "stale"
        assert {f"tag={tag_name(item)}" for item in [tag, *more]} <= set(purged)
        assert all(part.startswith("tag=") for part in purged[1:])

    with override_settings(CACHESWEEPER=edge, MIDDLEWARE=middleware):
        site.get("/edge/sweep/")  # drain purges left by earlier tests
        check()
    record(
        "hostile[tags from the request, LiteSpeed headers]",
        examples=examples["count"],
        injected_headers=0,
        split_tags=0,
    )


@pytest.mark.django_db(transaction=True)
def test_private_pages_are_never_served_to_another_user(site: Client) -> None:
    clients = {"anonymous": Client()}
    for name in ("alice", "bob"):
        user = User.objects.create_user(name, password="x")
        clients[name] = Client()
        clients[name].force_login(user)
    bearer = Client(HTTP_AUTHORIZATION="Bearer mallory")
    served = {"count": 0}

    @FUZZ
    @given(
        st.lists(st.sampled_from(["anonymous", "alice", "bob", "bearer"]), min_size=1, max_size=12)
    )
    def check(visitors: list[str]) -> None:
        for visitor in visitors:
            client = bearer if visitor == "bearer" else clients[visitor]
            response = client.get("/private/", HTTP_HOST="a.example")
            served["count"] += 1
            assert response.status_code == 200
            owner = response.content.decode().split()[0]
            assert owner == ("anonymous" if visitor == "bearer" else visitor)

    check()
    record(
        "hostile[private pages, 3 users + a bearer token]",
        requests=served["count"],
        served_to_another_user=0,
    )


def test_encode_is_what_names_use() -> None:
    """The tests above compare with ``tag_name``; it must be the lossless encoding."""
    assert tag_name("a b,c") == encode("a b,c") == "a%20b%2Cc"
