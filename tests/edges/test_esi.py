"""ESI for holes without a Varnish: the decision, the references, Fastly and Cloudflare.

Driven through Django's test client with ``EdgeMiddleware`` and the views of
``tests.edges.esi_site`` (``cachesweeper.urls`` mounted at ``/_cachesweeper/``).
Fastly and Cloudflare purge local fakes of their APIs. The whole path
through a real ``varnishd`` is in ``test_holes_esi.py``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory, override_settings

import cachesweeper
from cachesweeper import esi, holes
from cachesweeper.checks import check_edges
from cachesweeper.edges import queue
from cachesweeper.edges.fastly import Fastly
from cachesweeper.edges.varnish import Varnish
from tests.edges.fake_api import (
    CLOUDFLARE_TOKEN,
    CLOUDFLARE_ZONE,
    FASTLY_SERVICE,
    FASTLY_TOKEN,
    FakeAPI,
    serve,
)
from tests.helpers import render

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

MIDDLEWARE = [
    "cachesweeper.middleware.EdgeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ESI = {"HTTP_SURROGATE_CAPABILITY": 'cachesweeper="ESI/1.0"'}
INCLUDE = re.compile(r'<esi:include src="(/_cachesweeper/hole/([^/"]+)/)"/>')
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
VARNISH = {"BACKEND": "cachesweeper.edges.Varnish", "OPTIONS": {"servers": ["http://127.0.0.1:9"]}}


def varnish(**options: Any) -> dict[str, Any]:
    return {**VARNISH, "OPTIONS": {**VARNISH["OPTIONS"], **options}}


@pytest.fixture
def site() -> Iterator[None]:
    with override_settings(ROOT_URLCONF="tests.edges.esi_site", MIDDLEWARE=MIDDLEWARE):
        yield


@pytest.fixture
def apis(site: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeAPI, FakeAPI]]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())
    with serve("fastly") as fastly, serve("cloudflare") as cloudflare:
        yield fastly, cloudflare
        queue.purges.flush(5)


def fastly(api: FakeAPI, **options: Any) -> dict[str, Any]:
    base = {"service_id": FASTLY_SERVICE, "api_token": FASTLY_TOKEN, "endpoint": api.url}
    return {"BACKEND": "cachesweeper.edges.Fastly", "OPTIONS": {**base, **options}}


def cloudflare(api: FakeAPI) -> dict[str, Any]:
    options = {"zone_id": CLOUDFLARE_ZONE, "api_token": CLOUDFLARE_TOKEN, "endpoint": api.url}
    return {"BACKEND": "cachesweeper.edges.Cloudflare", "OPTIONS": options}


# -- who gets includes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "method", "meta", "expected"),
    [
        ([varnish(esi=True)], "get", ESI, True),
        ([varnish(esi=True)], "head", ESI, True),
        ([varnish(esi=True)], "get", {}, False),  # not through an ESI edge
        ([varnish(esi=True)], "post", ESI, False),
        ([varnish(esi=True)], "get", {**ESI, "HTTP_COOKIE": "sessionid=abc"}, False),
        ([varnish(esi=True)], "get", {**ESI, "HTTP_AUTHORIZATION": "Basic eA=="}, False),
        ([varnish(esi=True)], "get", {**ESI, "cachesweeper.wsgi": "1"}, False),
        ([varnish()], "get", ESI, False),  # no edge with esi
        ([], "get", ESI, False),
    ],
)
def test_one_function_decides_who_gets_includes(
    site: None, edges: list[Any], method: str, meta: dict[str, str], expected: bool
) -> None:
    request = getattr(RequestFactory(), method)("/page/", **meta)
    with override_settings(CACHESWEEPER={"EDGES": edges}):
        assert esi.wanted(request) is expected


def test_without_cachesweeper_urls_holes_are_filled_and_a_check_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with override_settings(CACHESWEEPER={"EDGES": [varnish(esi=True)]}):
        assert not esi.wanted(RequestFactory().get("/", **ESI))  # tests.urls lacks them
        assert [message.id for message in check_edges()] == [
            "cachesweeper.W002",  # no EdgeMiddleware either
            "cachesweeper.E009",
        ]
        with override_settings(ROOT_URLCONF="tests.edges.esi_site", MIDDLEWARE=MIDDLEWARE):
            assert check_edges() == []
    assert "cachesweeper.urls is not in the URLconf" in caplog.text


@pytest.mark.parametrize("edge", [Varnish, Fastly])
def test_the_esi_option_is_a_boolean(edge: type[Any]) -> None:
    options = {"servers": ["http://127.0.0.1:9"]} if edge is Varnish else {}
    if edge is Fastly:
        options = {"service_id": FASTLY_SERVICE, "api_token": FASTLY_TOKEN}
    assert edge(**options).esi is False
    assert edge(**options, esi=True).esi is True
    with pytest.raises(ImproperlyConfigured, match="esi"):
        edge(**options, esi="yes")


# -- references -------------------------------------------------------------------------


def test_a_reference_round_trips_and_any_change_is_refused() -> None:
    hole = holes.Hole("hole:x.html:3:abc", "x.html", {"id": 7, "who": "ann", "tags": ["a"]})
    reference = esi.sign(hole)
    assert esi.sign(hole) == reference  # the same hole, the same URL (the page stays one)
    assert esi.unsign(reference) == hole
    value, signature = reference.rsplit(":", 1)
    for bad in (f"{value}x:{signature}", f"{value}:{signature[:-1]}", "nothing", ""):
        with pytest.raises(signing.BadSignature):
            esi.unsign(bad)
    other = signing.Signer(salt="something else").sign_object(list(hole))
    with pytest.raises(signing.BadSignature):
        esi.unsign(other)  # signed by this site, for another purpose
    shape = signing.Signer(salt=esi.SALT).sign_object({"place": "x"})
    with pytest.raises(signing.BadSignature, match="not a hole"):
        esi.unsign(shape)


@pytest.mark.parametrize(
    "value", [(1, 2), {1: "a"}, datetime.date(2024, 1, 1), {"nested": [(1,)]}, float("nan")]
)
def test_with_an_esi_edge_captured_values_must_be_json_values(site: None, value: Any) -> None:
    source = (
        "{% load cachesweeper %}{% cachesweeper 'esi-values' 60 %}"
        "{% nocache value=value %}[{{ value }}]{% endnocache %}{% endcachesweeper %}"
    )
    with override_settings(CACHESWEEPER={"EDGES": [varnish(esi=True)]}):
        with pytest.raises(holes.HoleValueError, match="JSON values"):
            render(source, value=value)
        assert (
            render(source.replace("esi-values", "esi-ok"), value=[1, "a"])
            == "[[1, &#x27;a&#x27;]]"
        )
    with override_settings(CACHESWEEPER={"EDGES": [varnish()]}):
        render(source.replace("esi-values", "no-esi"), value=value)  # no ESI: picklable is enough


# -- the hole view ------------------------------------------------------------------------


def test_a_hole_is_rendered_for_the_visitor_who_asks(site: None) -> None:
    with override_settings(CACHESWEEPER={"EDGES": [varnish(esi=True)]}):
        page = Client().get("/page/", **ESI).content.decode()
    (form, _), (comment, _) = INCLUDE.findall(page)
    ann = Client(enforce_csrf_checks=True)
    hole = ann.get(form)
    assert hole["Cache-Control"] == "private, no-store"
    assert "csrftoken" in hole.cookies  # Django's usual cookie (the edge drops it)
    token = TOKEN.search(hole.content.decode())
    assert token and ann.post("/vote/", {"csrfmiddlewaretoken": token.group(1)}).status_code == 200
    assert Client().get(comment).content == b"hole for comment 7"
    assert Client().post(comment).status_code == 405


def test_a_reference_to_a_hole_no_template_has_gets_400(site: None) -> None:
    gone = esi.sign(holes.Hole("hole:removed.html:1:0", None, {}))
    answer = Client().get(f"/_cachesweeper/hole/{gone}/")
    assert answer.status_code == 400
    assert answer["Cache-Control"] == "private, no-store"


def test_the_csrf_view_mints_django_s_cookie_and_nothing_else(site: None) -> None:
    answer = Client().get("/_cachesweeper/csrf/")
    assert answer.status_code == 204 and answer.content == b""
    assert answer["Cache-Control"] == "private, no-store"
    assert list(answer.cookies) == ["csrftoken"]


@override_settings(CSRF_COOKIE_NAME="formcookie")
def test_a_renamed_csrf_cookie_is_named_to_the_edge(site: None) -> None:
    with override_settings(CACHESWEEPER={"EDGES": [varnish(esi=True)]}):
        page = Client().get("/page/", **ESI)
    assert page[esi.CSRF_COOKIE_HEADER] == "formcookie"
    assert page[esi.CSRF_URL_HEADER] == "/_cachesweeper/csrf/"


@override_settings(CSRF_USE_SESSIONS=True)
def test_no_cookie_is_named_when_csrf_lives_in_the_session(site: None) -> None:
    with override_settings(CACHESWEEPER={"EDGES": [varnish(esi=True)]}):
        page = Client().get("/page/", **ESI)
    assert INCLUDE.search(page.content.decode())
    assert not page.has_header(esi.CSRF_COOKIE_HEADER)


# -- Fastly and Cloudflare ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/page/", "/fragment/"])
def test_fastly_with_esi_shares_the_page_and_a_sweep_purges_it(
    apis: tuple[FakeAPI, FakeAPI], path: str
) -> None:
    api, _ = apis
    with override_settings(CACHESWEEPER={"EDGES": [fastly(api, esi=True)]}):
        pages = [Client().get(path, **ESI) for _ in range(2)]
        for page in pages:
            assert len(INCLUDE.findall(page.content.decode())) >= 1
            assert "csrfmiddlewaretoken" not in page.content.decode()
            assert page["Surrogate-Control"] == 'max-age=60, content="ESI/1.0"'
            assert "private" not in page["Cache-Control"]
            assert not page.cookies
        assert pages[0].content == pages[1].content  # one copy for everyone
        tags = pages[0]["Surrogate-Key"].split(" ")
        assert ("esi-page" if path == "/page/" else "esi-fragment") in tags

        cachesweeper.invalidate_tag(*tags[:1])
        assert queue.purges.flush(5)
    assert [r.body["surrogate_keys"] for r in api.requests] == [tags[:1]]


def test_fastly_without_esi_gets_a_private_filled_page(apis: tuple[FakeAPI, FakeAPI]) -> None:
    api, _ = apis
    with override_settings(CACHESWEEPER={"EDGES": [fastly(api)]}):
        page = Client().get("/page/", **ESI)
    assert TOKEN.search(page.content.decode()) and "private" in page["Cache-Control"]
    assert page["Surrogate-Control"] == "no-store" and not page.has_header("Surrogate-Key")


@pytest.mark.parametrize("path", ["/page/", "/fragment/"])
def test_cloudflare_never_shares_a_page_with_holes(
    apis: tuple[FakeAPI, FakeAPI], path: str
) -> None:
    _, api = apis
    alone = {"EDGES": [cloudflare(api)]}
    behind = {"EDGES": [varnish(esi=True), cloudflare(api)]}  # Cloudflare in front of Varnish
    for edges, includes in ((alone, False), (behind, True)):
        with override_settings(CACHESWEEPER=edges):
            page = Client().get(path, **ESI)
        assert bool(INCLUDE.search(page.content.decode())) is includes
        assert page["Cloudflare-CDN-Cache-Control"] == "no-store"
        assert not page.has_header("Cache-Tag")
