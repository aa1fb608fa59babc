"""Holes: ``{% nocache %}`` parts of cached pages and fragments, rendered for every request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.template import Context, Template
from django.test import Client, RequestFactory

import cachesweeper
from cachesweeper import holes
from tests.helpers import missed_keys, render
from tests.testapp import views
from tests.testapp.models import Article, Comment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _calls() -> Iterator[None]:
    views.CALLS.clear()
    yield
    views.CALLS.clear()


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="Holes")


def visitor() -> Client:
    """A new anonymous visitor, whose POSTs Django's CSRF check judges."""
    return Client(enforce_csrf_checks=True)


# -- CSRF forms ----------------------------------------------------------------------------


def test_a_csrf_form_in_a_hole_is_rendered_once_and_every_visitor_gets_a_valid_token(
    article: Article,
) -> None:
    visitors = [visitor() for _ in range(3)]
    pages = [client.get("/holes/form/") for client in visitors]

    assert views.CALLS["form"] == 1  # one render, stored, served to the other two
    assert all("rendered 1" in page.content.decode() for page in pages)
    tokens = [TOKEN.search(page.content.decode()).group(1) for page in pages]  # type: ignore[union-attr]
    assert len(set(tokens)) == 3  # each visitor their own (masked) token
    for client, page, token in zip(visitors, pages, tokens, strict=True):
        assert "csrftoken" in page.cookies  # the cookie the token is checked against
        assert "private" in page["Cache-Control"]
        answer = client.post("/holes/vote/", {"csrfmiddlewaretoken": token})
        assert answer.status_code == 200, answer.content


def test_an_async_view_fills_its_holes_for_every_visitor() -> None:
    tokens = set()
    for client in (visitor(), visitor()):
        page = client.get("/holes/form-async/").content.decode()
        token = TOKEN.search(page).group(1)  # type: ignore[union-attr]
        assert client.post("/holes/vote/", {"csrfmiddlewaretoken": token}).status_code == 200
        tokens.add(token)
    assert len(tokens) == 2
    assert views.CALLS["form_async"] == 1


def test_another_visitors_token_is_refused(article: Article) -> None:
    ann, bob = visitor(), visitor()
    ann_token = TOKEN.search(ann.get("/holes/form/").content.decode()).group(1)  # type: ignore[union-attr]
    bob.get("/holes/form/")

    assert bob.post("/holes/vote/", {"csrfmiddlewaretoken": ann_token}).status_code == 403


def test_the_same_form_with_the_token_outside_a_hole_is_not_stored(article: Article) -> None:
    for client in (visitor(), visitor()):
        page = client.get("/holes/form-unholed/")
        assert TOKEN.search(page.content.decode())
    assert views.CALLS["form_unholed"] == 2
    assert "CSRF" in page.cachesweeper_refusal  # type: ignore[attr-defined]


def test_a_page_cached_twice_is_filled_once_by_the_outer_cache(
    article: Article, settings: Any
) -> None:
    """``cache_page`` inside the site-wide page cache: the outer one stores the markers."""
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "cachesweeper.middleware.PageCacheMiddleware"]
    settings.CACHESWEEPER = {"PAGE_RULES": [("/holes/", 60, 0)]}
    for number, client in enumerate((visitor(), visitor())):
        with missed_keys() as missed:
            page = client.get("/holes/form/").content.decode()
        assert len(missed) == (2 if number == 0 else 0)  # then a hit of the outer cache
        token = TOKEN.search(page).group(1)  # type: ignore[union-attr]
        assert client.post("/holes/vote/", {"csrfmiddlewaretoken": token}).status_code == 200
    assert views.CALLS["form"] == 1


def test_a_head_request_gets_the_headers_of_a_page_with_holes(article: Article) -> None:
    visitor().get("/holes/form/")
    head = visitor().head("/holes/form/")
    assert head.status_code == 200 and head.content == b""
    assert views.CALLS["form"] == 1


# -- login bars -------------------------------------------------------------------------


def test_a_login_bar_in_a_hole_shows_each_visitor_their_own_state() -> None:
    User.objects.create_user("ann", password="pw")
    anonymous = visitor().get("/holes/login-bar/").content.decode()
    ann = Client()
    assert ann.login(username="ann", password="pw")
    logged_in = ann.get("/holes/login-bar/").content.decode()
    again = visitor().get("/holes/login-bar/").content.decode()

    assert "Log in" in anonymous and "Hello" not in anonymous
    assert "Hello, ann" in logged_in and "Log in" not in logged_in
    assert again == anonymous  # the page stored for anonymous visitors, holes filled afresh
    assert views.CALLS["login_bar"] == 2  # logged-in visitors are not served shared pages


# -- captured values, fragments, lists, sweeps --------------------------------------------


def test_captured_values_come_back_on_hits(article: Article) -> None:
    first = Comment.objects.create(article=article, text="one")
    second = Comment.objects.create(article=article, text="two")

    for _ in range(2):
        page = visitor().get("/holes/captured/").content.decode()
        assert f"one [hole {first.pk} at /holes/captured/]" in page
        assert f"two [hole {second.pk} at /holes/captured/]" in page
    assert views.CALLS["captured"] == 1


def test_a_hole_in_a_fragment_is_filled_on_hits(article: Article) -> None:
    source = "{% include 'holes/in_fragment.html' %}"
    factory = RequestFactory()
    first = render_for(source, factory.get("/?who=ann"), article=article)
    second = render_for(source, factory.get("/?who=bob"), article=article)

    assert first == "<h1>Holes</h1>for ann"
    assert second == "<h1>Holes</h1>for bob"


def test_holes_in_a_cached_list_are_filled_from_the_list_entry(article: Article) -> None:
    comments = [Comment.objects.create(article=article, text=text) for text in ("a", "b", "c")]
    source = "{% include 'holes/in_list.html' %}"
    factory = RequestFactory()
    expected = "".join(f"<li>{c.text} ({c.pk} for WHO)</li>" for c in comments)
    for who in ("ann", "bob", "cy"):  # a miss, then the list entry's hits
        html = render_for(source, factory.get(f"/?who={who}"), comments=comments)
        assert html == expected.replace("WHO", who)


def test_a_sweep_re_renders_the_page_and_keeps_its_holes(article: Article) -> None:
    visitor().get("/holes/form/")
    Article.objects.filter(pk=article.pk).update(title="Swept")
    cachesweeper.invalidate_tag("holes")

    page = visitor().get("/holes/form/").content.decode()
    assert "Swept" in page and "rendered 2" in page and TOKEN.search(page)


def test_a_hole_outside_anything_cached_renders_in_place() -> None:
    html = render("{% load cachesweeper %}a{% nocache x=1 %}[{{ x }}]{% endnocache %}b")
    assert html == "a[1]b"


def test_text_that_looks_like_a_marker_is_left_alone(article: Article) -> None:
    forged = "<!--cs-hole:" + "0" * 32 + "-->"
    article.title = forged
    source = (
        "{% load cachesweeper %}{% cachesweeper article 60 %}{{ article.title|safe }}"
        "{% nocache %}hole{% endnocache %}{% endcachesweeper %}"
    )
    assert render(source, article=article) == forged + "hole"
    assert render(source, article=article) == forged + "hole"


# -- outside Django's page caches ---------------------------------------------------------


def test_the_wsgi_page_cache_does_not_store_a_page_with_holes(article: Article) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    from cachesweeper.wsgi import PageCacheMiddleware
    from tests.test_wsgi import call

    with override_settings(MIDDLEWARE=["cachesweeper.middleware.EdgeMiddleware"]):
        app = PageCacheMiddleware(WSGIHandler(), [("/wsgi", 60, 0)], "default")
        ann = call(app, "/wsgi/holes/", HTTP_HOST="testserver", HTTP_X_WHO="ann")
        bob = call(app, "/wsgi/holes/", HTTP_HOST="testserver", HTTP_X_WHO="bob")

    assert ann[2].strip().endswith(b"for ann") and bob[2].strip().endswith(b"for bob")
    assert views.CALLS["hole_in_fragment"] == 2
    assert "private" in ann[1]["Cache-Control"]


def test_a_page_showing_a_filled_hole_is_private_for_the_edges(
    article: Article, settings: Any
) -> None:
    settings.MIDDLEWARE = ["cachesweeper.middleware.EdgeMiddleware", *settings.MIDDLEWARE]
    settings.CACHESWEEPER = {"EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed"}]}
    comment = Comment.objects.create(article=article, text="no hole")
    assert "X-LiteSpeed-Tag" in Client().get(f"/wsgi/fragment/{comment.pk}/")  # the control
    for who in ("ann", "bob"):
        page = Client().get("/wsgi/holes/", HTTP_X_WHO=who)
        assert page.content.decode().strip().endswith(f"for {who}")
        assert "private" in page["Cache-Control"]
        assert "X-LiteSpeed-Tag" not in page


# -- bad input ------------------------------------------------------------------------------


def test_a_huge_captured_value_is_refused_clearly(article: Article) -> None:
    source = (
        "{% load cachesweeper %}{% cachesweeper article 60 %}"
        "{% nocache text=text %}{{ text|length }}{% endnocache %}{% endcachesweeper %}"
    )
    with pytest.raises(holes.HoleValueError, match="bytes pickled, more than 2048"):
        render(source, article=article, text="x" * 10_000)


def test_an_unpicklable_captured_value_is_refused_clearly(article: Article) -> None:
    source = (
        "{% load cachesweeper %}{% cachesweeper article 60 %}"
        "{% nocache rows=rows %}{% endnocache %}{% endcachesweeper %}"
    )
    with pytest.raises(holes.HoleValueError, match="must be picklable"):
        render(source, article=article, rows=(row for row in range(3)))


def render_for(source: str, request: Any, **context: Any) -> str:
    """Render as a view would: with a request, through the project's context processors."""
    from django.template import engines

    return engines["django"].from_string(source).render(context, request).strip()


def test_a_plain_context_fills_holes_without_a_request(article: Article) -> None:
    template = Template(
        "{% load cachesweeper %}{% cachesweeper article 60 %}"
        "{% nocache n=2 %}{{ n }}{% endnocache %}{% endcachesweeper %}"
    )
    assert template.render(Context({"article": article})) == "2"
    assert template.render(Context({"article": article})) == "2"


# -- after a deploy ------------------------------------------------------------------------


def lose_holes(key: str) -> None:
    """Make the stored entry at ``key`` name a hole no template has: what an entry stored
    before a deploy that edited the hole's body looks like to the new code."""
    from django.core.cache import caches

    from cachesweeper.entries import Entry

    cache = caches["default"]
    entry = Entry.load(cache.get(key))
    assert entry is not None and isinstance(entry.payload, holes.Holed)
    gone = {
        nonce: hole._replace(place="hole:gone.html:1:0000")
        for nonce, hole in entry.payload.holes.items()
    }
    payload = entry.payload._replace(holes=gone)
    cache.set(key, entry._replace(payload=payload).dump(), 60)


def test_a_page_naming_a_lost_hole_is_rendered_afresh_then_stored_anew(
    article: Article,
) -> None:
    with missed_keys() as missed:
        visitor().get("/holes/form/")
    (key,) = missed
    lose_holes(key)

    client = visitor()
    page = client.get("/holes/form/")
    token = TOKEN.search(page.content.decode()).group(1)  # type: ignore[union-attr]
    assert client.post("/holes/vote/", {"csrfmiddlewaretoken": token}).status_code == 200
    assert views.CALLS["form"] == 2  # rendered afresh, not a 500
    visitor().get("/holes/form/")  # the lost entry was forgotten: stored anew
    visitor().get("/holes/form/")
    assert views.CALLS["form"] == 3


def test_a_fragment_naming_a_lost_hole_is_rendered_afresh(article: Article) -> None:
    source = "{% include 'holes/in_fragment.html' %}"
    factory = RequestFactory()
    with missed_keys() as missed:
        render_for(source, factory.get("/?who=ann"), article=article)
    (key,) = missed
    lose_holes(key)

    assert render_for(source, factory.get("/?who=bob"), article=article).endswith("for bob")
    with missed_keys() as missed:  # forgotten: the next render stores it anew
        assert render_for(source, factory.get("/?who=cy"), article=article).endswith("for cy")
    assert missed == [key]
