"""The Wagtail site behind a real Varnish (xkey) running the shipped VCL.

Pages are tagged with what their fragments depend on; an editor's publish
or a new slug purges every page that showed the change, by tag and by URL
(on the site's public host).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings
from wagtail.models import Site

from tests.edges.test_varnish import PUBLIC_HOST, behind_varnish, fetch, flush, raw_purge
from tests.servers import LOOPBACK, VarnishServer, need_binary, need_vmod
from tests.wagtail_site.conftest import Tree
from tests.wagtail_site.models import ArticlePage, IndexPage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.servers]


@pytest.fixture(scope="module")
def varnish(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    need_binary("varnishd")
    need_vmod("xkey")
    with behind_varnish(
        tmp_path_factory.mktemp("vcl"),
        MIDDLEWARE=["cachesweeper.middleware.EdgeMiddleware", *settings.MIDDLEWARE],
        ROOT_URLCONF="tests.wagtail_site.urls_edge",
        ALLOWED_HOSTS=[PUBLIC_HOST, LOOPBACK, "localhost"],
    ) as (server, _):
        yield server


@pytest.fixture
def public(varnish: VarnishServer, site: Tree, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tree]:
    """The tree served as ``PUBLIC_HOST``, an empty Varnish, and a purge queue of its own."""
    from cachesweeper.edges import queue

    monkeypatch.setattr(queue, "FIRST_DELAY", 0.2)
    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())
    Site.objects.filter(is_default_site=True).update(hostname=PUBLIC_HOST)
    Site.clear_site_root_paths_cache()
    assert raw_purge(varnish, X_Purge_All="1") == 200
    caches["default"].clear()
    edges = [{"BACKEND": "cachesweeper.edges.Varnish", "OPTIONS": {"servers": [varnish.url]}}]
    with override_settings(CACHESWEEPER={"EDGES": edges}):
        yield site
        queue.purges.flush(10)


def cached(varnish: VarnishServer, *paths: str) -> None:
    """Each page is a MISS, then a HIT."""
    for path in paths:
        assert fetch(varnish, path).cache == "MISS", path
        page = fetch(varnish, path)
        assert page.cache == "HIT", path


def test_a_publish_purges_every_page_that_shows_it(varnish: VarnishServer, public: Tree) -> None:
    paths = ("/", "/blog/", "/blog/first/")
    cached(varnish, *paths)
    draft = ArticlePage.objects.get(pk=public.first.pk)
    draft.title = "First, edited"
    draft.save_revision().publish()
    flush()

    for path in paths:
        page = fetch(varnish, path)
        assert (page.cache, "First, edited" in page.body) == ("MISS", True), path
    assert fetch(varnish, "/blog/second/").cache == "MISS"  # never fetched: nothing to purge


def test_a_draft_purges_nothing(varnish: VarnishServer, public: Tree) -> None:
    cached(varnish, "/blog/first/")
    draft = ArticlePage.objects.get(pk=public.first.pk)
    draft.title = "Draft title"
    draft.save_revision()
    flush()

    page = fetch(varnish, "/blog/first/")
    assert (page.cache, "Draft title" in page.body) == ("HIT", False)


def test_a_new_slug_purges_the_old_urls_of_the_subtree(
    varnish: VarnishServer, public: Tree
) -> None:
    cached(varnish, "/", "/blog/", "/blog/first/")
    draft = IndexPage.objects.get(pk=public.blog.pk)
    draft.slug = "journal"
    draft.save_revision().publish()
    flush()

    assert fetch(varnish, "/blog/first/").status == 404
    assert fetch(varnish, "/blog/").status == 404
    home = fetch(varnish, "/")
    assert (home.cache, 'href="/journal/first/"' in home.body) == ("MISS", True)


def test_the_purge_urls_name_the_public_host(public: Tree) -> None:
    from cachesweeper.contrib.wagtail.purging import page_urls

    urls = page_urls(ArticlePage.objects.get(pk=public.first.pk))
    assert f"http://{PUBLIC_HOST}/blog/first/" in urls
    assert "http://other.test/first/" in urls
