"""LiteSpeed: tags and cache control on responses, purges on the response that swept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

import cachesweeper
from cachesweeper.edges import lscache_purge
from cachesweeper.edges.litespeed import purge_value
from tests.testapp.models import Article, Comment

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE = [
    "cachesweeper.middleware.EdgeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def litespeed(**options: object) -> dict[str, object]:
    return {"EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed", "OPTIONS": options}]}


@pytest.fixture(autouse=True)
def _edge_site() -> Iterator[None]:
    with override_settings(
        ROOT_URLCONF="tests.edges.views", MIDDLEWARE=MIDDLEWARE, CACHESWEEPER=litespeed()
    ):
        client = Client()
        client.get("/not-cached/")  # drain purges left by other tests' sweeps
        yield


def comment() -> Comment:
    return Comment.objects.create(article=Article.objects.create(title="a"), text="hello")


def test_cacheable_response_carries_tags_and_cache_control(client: Client) -> None:
    target = comment()
    response = client.get(f"/comment/{target.pk}/")
    assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=60"
    tags = response["X-LiteSpeed-Tag"].split(",")
    assert tags == [f"testapp.comment.{target.pk}", "frontpage", "testapp.comment.*"]


def test_max_age_zero_is_no_cache(client: Client) -> None:
    assert client.get("/not-cached/")["X-LiteSpeed-Cache-Control"] == "no-cache"


def test_responses_that_set_cookies_get_no_public_edge_headers(client: Client) -> None:
    response = client.get("/cookie/")
    assert response["X-LiteSpeed-Cache-Control"] == "no-cache"
    assert not response.has_header("X-LiteSpeed-Tag")
    assert response.cookies["a"].value == "b"


def test_logged_in_users_get_no_public_edge_headers(client: Client) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("ann", password="pw")
    client.login(username="ann", password="pw")
    target = comment()
    response = client.get(f"/comment/{target.pk}/")
    assert response["X-LiteSpeed-Cache-Control"] == "no-cache"
    assert not response.has_header("X-LiteSpeed-Tag")


def test_the_saving_request_carries_the_purge(client: Client) -> None:
    target = comment()
    response = client.post(f"/comment/{target.pk}/save/")
    purge = response["X-LiteSpeed-Purge"]
    assert purge.startswith("stale, ")
    parts = purge.split(", ")
    assert f"tag=testapp.comment.{target.pk}" in parts
    assert f"tag=testapp.article.{target.article_id}" in parts  # touch=["article"]
    assert f"/article/{target.article_id}/" in parts  # the article's get_absolute_url()
    # Delivered once.
    assert not client.get("/not-cached/").has_header("X-LiteSpeed-Purge")


def test_hard_purge_option(client: Client) -> None:
    with override_settings(CACHESWEEPER=litespeed(stale=False)):
        target = comment()
        client.get("/not-cached/")
        response = client.post(f"/comment/{target.pk}/save/")
    assert response["X-LiteSpeed-Purge"].startswith("tag=")


def test_sweeps_outside_a_request_ride_on_the_next_response(client: Client) -> None:
    cachesweeper.invalidate_tag("frontpage")  # e.g. from a management command
    assert client.get("/not-cached/")["X-LiteSpeed-Purge"] == "stale, tag=frontpage"


def test_lscache_decorator_works_without_the_middleware() -> None:
    with override_settings(MIDDLEWARE=[]):
        response = Client().get("/lscache/")
        admin = Client().get("/lscache-admin/")
    assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=300"
    assert response["X-LiteSpeed-Tag"] == "blog,frontpage"
    assert admin["X-LiteSpeed-Cache-Control"] == "no-cache"


def test_lscache_purge_values() -> None:
    assert lscache_purge() == "stale, *"
    assert lscache_purge(stale=False) == "*"
    assert lscache_purge(tags=["blog", "a,b"], stale=False) == "tag=blog, tag=a%2Cb"
    assert lscache_purge(uris=["/about/"]) == "stale, /about/"
    assert lscache_purge(tags=[Article]) == "stale, tag=testapp.article"


@pytest.mark.parametrize("uri", ["/a,b", "/a\r\nX-Evil: 1", "relative", "/a b"])
def test_purge_uris_cannot_inject(uri: str) -> None:
    with pytest.raises(ValueError, match="not a purgeable path"):
        purge_value(uris=[uri])


@pytest.mark.parametrize("tag", ["a\r\nX-Evil: 1", "a,b", "a b", "ünï"])
def test_tags_are_encoded_so_nothing_can_inject(tag: str) -> None:
    value = lscache_purge(tags=[tag])
    assert "\r" not in value and "\n" not in value
    assert value.count(",") == 1  # "stale, tag=..." only: the tag was not split
    with pytest.raises(ValueError, match="header-safe"):
        purge_value([tag])


def test_many_names_are_coarsened_under_the_header_limit(client: Client) -> None:
    article = Article.objects.create(title="a")
    Comment.objects.bulk_create(Comment(article=article, text=f"c{i}") for i in range(800))
    response = client.get("/many/")
    tags = response["X-LiteSpeed-Tag"]
    assert len(tags) <= 8192
    # testapp.comment: the page's query listed comments (cachesweeper.loads).
    assert tags.split(",") == [
        "testapp.comment.**",
        "testapp.comment",
        "many",
        "testapp.comment.*",
    ]
    assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=60"

    # Any comment's purge also purges the coarse tag, so that page goes too.
    one = Comment.objects.first()
    assert one is not None
    one.save()
    purge = client.get("/not-cached/")["X-LiteSpeed-Purge"]
    assert "tag=testapp.comment.**" in purge.split(", ")


def test_edge_cache_inside_cache_page_keeps_its_policy_on_page_hits(client: Client) -> None:
    miss = client.get("/page-cached/")
    hit = client.get("/page-cached/")
    assert hit["Age"] is not None  # served from the page cache
    for response in (miss, hit):
        assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=120"
        assert response["X-LiteSpeed-Tag"] == "cached"


def test_cache_page_and_edge_cache_tags_reach_litespeed_and_varnish(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explicit tags reach the edge headers, on the page cache's miss and on its hits."""
    from cachesweeper.edges import queue

    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())  # the Varnish below is not there
    varnish = {
        "BACKEND": "cachesweeper.edges.Varnish",
        "OPTIONS": {"servers": ["http://127.0.0.1:9"]},
    }
    edges = {"EDGES": [*litespeed()["EDGES"], varnish]}  # type: ignore[misc]
    with override_settings(CACHESWEEPER=edges):
        target = comment()
        miss = client.get(f"/comment/{target.pk}/tagged/")
        hit = client.get(f"/comment/{target.pk}/tagged/")
    assert hit.has_header("Age")  # the view did not run
    for response in (miss, hit):
        for tags in (response["X-LiteSpeed-Tag"].split(","), response["xkey"].split(" ")):
            assert {"listing", "edge-tag", f"testapp.comment.{target.pk}"} <= set(tags)
        assert response["X-LiteSpeed-Cache-Control"] == "public, max-age=90"
