"""Fastly and Cloudflare end to end: configured in settings, driven through Django.

``CACHESWEEPER["EDGES"]`` points both backends at local fakes of their APIs
(:mod:`tests.edges.fake_api`, which refuse what the real APIs refuse), with
``EdgeMiddleware`` in ``MIDDLEWARE``. A visitor's response carries the tags
of what it rendered; a save commits, the background worker delivers the
purge, and the fake sees the exact request the provider would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import transaction
from django.test import Client, override_settings

import cachesweeper
from cachesweeper.edges import queue
from cachesweeper.edges.base import coarse
from tests.edges.fake_api import (
    CLOUDFLARE_TOKEN,
    CLOUDFLARE_ZONE,
    FASTLY_SERVICE,
    FASTLY_TOKEN,
    FakeAPI,
    serve,
)
from tests.testapp.models import Article, Comment

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE = [
    "cachesweeper.middleware.EdgeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
FASTLY_PURGE = f"/service/{FASTLY_SERVICE}/purge"
CLOUDFLARE_PURGE = f"/zones/{CLOUDFLARE_ZONE}/purge_cache"


@dataclass
class Site:
    fastly: FakeAPI
    cloudflare: FakeAPI
    client: Client

    def configure(self, *, soft: bool = True) -> override_settings:
        return override_settings(
            CACHESWEEPER={
                "EDGES": [
                    {
                        "BACKEND": "cachesweeper.edges.Fastly",
                        "OPTIONS": {
                            "service_id": FASTLY_SERVICE,
                            "api_token": FASTLY_TOKEN,
                            "endpoint": self.fastly.url,
                            "soft": soft,
                        },
                    },
                    {
                        "BACKEND": "cachesweeper.edges.Cloudflare",
                        "OPTIONS": {
                            "zone_id": CLOUDFLARE_ZONE,
                            "api_token": CLOUDFLARE_TOKEN,
                            "endpoint": self.cloudflare.url,
                        },
                    },
                ]
            }
        )

    def delivered(self) -> None:
        """Wait for the worker; then only this test's purges are recorded."""
        assert queue.purges.flush(10), "purges were not delivered"

    def forget(self) -> None:
        self.delivered()
        self.fastly.requests.clear()
        self.cloudflare.requests.clear()


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())  # this test's own worker
    urls = override_settings(ROOT_URLCONF="tests.edges.views", MIDDLEWARE=MIDDLEWARE)
    with serve("fastly") as fastly, serve("cloudflare") as cloudflare, urls:
        site = Site(fastly, cloudflare, Client())
        with site.configure():
            yield site
        queue.purges.flush(5)


def make_comment() -> Comment:
    return Comment.objects.create(article=Article.objects.create(title="a"), text="hello")


def fastly_keys(api: FakeAPI) -> list[str]:
    calls = [r for r in api.requests if r.path == FASTLY_PURGE]
    return [key for r in calls for key in r.body["surrogate_keys"]]


def cloudflare_bodies(api: FakeAPI, kind: str) -> list[list[str]]:
    return [r.body[kind] for r in api.requests if kind in r.body]


# Responses are tagged for both CDNs


def test_a_page_is_tagged_for_fastly_and_cloudflare(site: Site) -> None:
    comment = make_comment()
    response = site.client.get(f"/comment/{comment.pk}/")
    expected = [f"testapp.comment.{comment.pk}", "frontpage", "testapp.comment.*"]
    assert response["Surrogate-Key"].split(" ") == expected
    assert response["Surrogate-Control"] == "max-age=60"
    assert response["Cache-Tag"].split(",") == expected
    assert response["Cloudflare-CDN-Cache-Control"] == "max-age=60"
    assert "s-maxage=60" in response["Cache-Control"]


def test_cache_page_and_edge_cache_tags_reach_the_response_hit_or_miss(site: Site) -> None:
    comment = make_comment()
    miss = site.client.get(f"/comment/{comment.pk}/tagged/")
    hit = site.client.get(f"/comment/{comment.pk}/tagged/")
    assert hit.has_header("Age")  # served by the page cache: the view did not run
    for response in (miss, hit):
        keys = response["Surrogate-Key"].split(" ")
        tags = response["Cache-Tag"].split(",")
        for header in (keys, tags):
            assert {"listing", "edge-tag", f"testapp.comment.{comment.pk}"} <= set(header)
        assert response["Surrogate-Control"] == "max-age=90"

    site.forget()
    cachesweeper.invalidate_tag("listing")
    site.delivered()
    assert fastly_keys(site.fastly) == ["listing"]
    assert cloudflare_bodies(site.cloudflare, "tags") == [["listing"]]


def test_a_logged_in_visitor_gets_no_tags(site: Site) -> None:
    from django.contrib.auth.models import User

    site.client.force_login(User.objects.create_user("ann"))
    response = site.client.get(f"/comment/{make_comment().pk}/")
    assert not response.has_header("Surrogate-Key") and not response.has_header("Cache-Tag")
    assert response["Surrogate-Control"] == "no-store"
    assert response["Cloudflare-CDN-Cache-Control"] == "no-store"


# A save purges both CDNs, after commit, through the worker


def test_a_save_in_a_transaction_purges_fastly_after_commit(site: Site) -> None:
    comment = make_comment()
    site.client.get(f"/comment/{comment.pk}/")
    site.forget()

    with transaction.atomic():
        comment.text = "changed"
        comment.save()
        assert queue.purges.pending() == 0  # nothing leaves before the commit
    site.delivered()

    calls = site.fastly.requests
    assert all(r.method == "POST" for r in calls)
    assert all(r.header("Fastly-Key") == FASTLY_TOKEN for r in calls)
    assert all(r.header("Fastly-Soft-Purge") == "1" for r in calls)
    [keys] = [r.body["surrogate_keys"] for r in calls if r.path == FASTLY_PURGE]
    article = f"testapp.article.{comment.article_id}"
    for tag in (f"testapp.comment.{comment.pk}", coarse("testapp.comment.1"), article):
        assert tag in keys  # the comment, its coarse tag, what it touches
    # Saved outside a request: the article's URL goes to the first plain ALLOWED_HOSTS entry.
    url_purges = [r.path for r in calls if r.path.startswith("/purge/")]
    assert url_purges == [f"/purge/testserver/article/{comment.article_id}/"]


def test_hard_purges_when_soft_is_off(site: Site) -> None:
    comment = make_comment()
    with site.configure(soft=False):
        site.forget()
        comment.save()
        site.delivered()
    assert site.fastly.requests
    assert all(r.header("Fastly-Soft-Purge") is None for r in site.fastly.requests)


def test_a_save_in_a_transaction_purges_cloudflare_by_tag_and_url(site: Site) -> None:
    comment = make_comment()
    site.forget()
    with transaction.atomic():
        comment.save()
        assert queue.purges.pending() == 0
    site.delivered()

    for request in site.cloudflare.requests:
        assert (request.method, request.path) == ("POST", CLOUDFLARE_PURGE)
        assert request.header("Authorization") == f"Bearer {CLOUDFLARE_TOKEN}"
        assert request.header("Content-Type") == "application/json"
    [tags] = cloudflare_bodies(site.cloudflare, "tags")
    assert {f"testapp.comment.{comment.pk}", f"testapp.article.{comment.article_id}"} <= set(tags)
    assert cloudflare_bodies(site.cloudflare, "files") == [
        [f"https://testserver/article/{comment.article_id}/"]
    ]


def test_a_request_that_saves_purges_urls_on_its_own_host(site: Site) -> None:
    comment = make_comment()
    site.forget()
    response = site.client.post(
        f"/comment/{comment.pk}/save-atomically/", {"text": "new"}, HTTP_HOST="localhost"
    )
    assert response.status_code == 200
    site.delivered()
    article = comment.article_id
    assert [r.path for r in site.fastly.requests if r.path.startswith("/purge/")] == [
        f"/purge/localhost/article/{article}/"
    ]
    assert cloudflare_bodies(site.cloudflare, "files") == [
        [f"https://localhost/article/{article}/"]
    ]


def test_many_urls_go_to_cloudflare_30_at_a_time(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake refuses more than 30 URLs in one call, as Cloudflare's free plans do."""
    paths = [f"/article/page-{n}/" for n in range(45)]
    monkeypatch.setattr(Article, "get_purge_urls", lambda self: paths, raising=False)
    article = Article.objects.create(title="long")
    site.forget()
    article.save()
    site.delivered()
    files = cloudflare_bodies(site.cloudflare, "files")
    assert [len(chunk) for chunk in files] == [30, 15]
    assert [url for chunk in files for url in chunk] == [f"https://testserver{p}" for p in paths]
