"""``cachesweeper.contrib.wagtail`` on a small Wagtail site (see ``conftest.py``).

Each change an editor makes is checked on every page that shows it, with
fragments alone and with whole pages cached (``cache_page``, the site-wide
middleware), on each cache backend: the pages are first served from the
cache (no fragment or page rendered), then show the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpResponseBase
from django.test import Client, override_settings
from wagtail.models import Page

from cachesweeper import registry
from cachesweeper.edges import queue
from tests.edges.recording import RecordingEdge
from tests.helpers import missed_keys, swept
from tests.wagtail_site.conftest import Tree
from tests.wagtail_site.models import (
    ArticlePage,
    Author,
    Banner,
    Footer,
    IndexPage,
    SiteSettings,
    SocialLinks,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]

PAGES = ("/", "/blog/", "/blog/first/", "/blog/second/", "/news/")


def fetch(*urls: str, client: Client | None = None) -> dict[str, str]:
    client = client or Client()
    return {url: _body(client.get(url), url) for url in urls}


def _body(response: HttpResponseBase, url: str) -> str:
    assert response.status_code == 200, f"{url}: {response.status_code}"
    return response.content.decode()  # type: ignore[attr-defined, no-any-return]


def status(url: str) -> int:
    return Client().get(url).status_code


def warm(*urls: str) -> dict[str, str]:
    """Fetch ``urls`` twice; the second time everything must come from the cache."""
    first = fetch(*urls)
    with missed_keys() as keys:
        again = fetch(*urls)
    assert keys == [], "a warm page rendered something again"
    assert again == first
    return first


def edit(page: Page, **changes: Any) -> Page:
    """An editor's change, as the page editor makes it: on a fresh copy of the live page."""
    draft = type(page).objects.get(pk=page.pk)
    for name, value in changes.items():
        setattr(draft, name, value)
    return draft


# -- what is registered ------------------------------------------------------------


def test_every_page_type_snippet_and_setting_is_registered() -> None:
    found = registry.registrations()
    models = (Page, ArticlePage, IndexPage, Author, Footer, Banner, SiteSettings, SocialLinks)
    for model in models:
        assert model in found, model
    # The project's own registration of a snippet is kept, and completed.
    assert found[Author].touch == ("article_links__page",)
    assert "latest_revision" in found[ArticlePage].ignore_fields
    assert {"latest_revision", "has_unpublished_changes"} <= found[Banner].ignore_fields


def test_a_plain_page_save_sweeps_the_specific_page(site: Tree) -> None:
    """Wagtail saves plain Page objects (a move, a tree rewrite): templates show specific ones."""
    with swept() as names:
        Page.objects.get(pk=site.first.pk).save()
    pk = site.first.pk
    assert {f"wagtail_site.articlepage.{pk}", f"wagtailcore.page.{pk}"} <= set(names)
    assert "wagtail_site.articlepage" in names


# -- editors' changes, on every page that shows them --------------------------------


def test_publish(site: Tree, mode: str) -> None:
    warm(*PAGES)
    edit(site.first, title="First, edited").save_revision().publish()

    shown = fetch(*PAGES)
    for url in ("/", "/blog/", "/blog/first/"):
        assert "First, edited" in shown[url], url


def test_publish_a_new_page(site: Tree, mode: str) -> None:
    """Its parent's list of children changed: the parent is swept too."""
    third = ArticlePage(title="Third", slug="third", live=False)
    IndexPage.objects.get(pk=site.blog.pk).add_child(instance=third)
    warm(*PAGES)
    ArticlePage.objects.get(pk=third.pk).save_revision().publish()

    shown = fetch(*PAGES, "/blog/third/")
    for url in ("/", "/blog/"):
        assert "Third" in shown[url], url


def test_unpublish(site: Tree, mode: str) -> None:
    warm(*PAGES)
    ArticlePage.objects.get(pk=site.second.pk).unpublish()

    assert status("/blog/second/") == 404
    shown = fetch("/", "/blog/")
    assert all("Second" not in text for text in shown.values())


def test_delete(site: Tree, mode: str) -> None:
    warm(*PAGES)
    ArticlePage.objects.get(pk=site.second.pk).delete()

    assert status("/blog/second/") == 404
    assert all("Second" not in text for text in fetch("/", "/blog/").values())


def test_move(site: Tree, mode: str) -> None:
    warm(*PAGES)
    ArticlePage.objects.get(pk=site.first.pk).move(site.news, pos="last-child")

    assert status("/blog/first/") == 404
    shown = fetch("/", "/blog/", "/news/", "/news/first/")
    assert "First" not in shown["/blog/"]
    assert 'href="/news/first/"' in shown["/news/"]
    assert 'href="/news/first/"' in shown["/"]
    assert "/blog/first/" not in shown["/"]


def test_moving_a_subtree(site: Tree, mode: str) -> None:
    warm(*PAGES)
    IndexPage.objects.get(pk=site.blog.pk).move(site.news, pos="last-child")

    assert status("/blog/first/") == 404
    shown = fetch("/", "/news/", "/news/blog/", "/news/blog/first/")
    for url in ("/", "/news/blog/"):
        assert 'href="/news/blog/first/"' in shown[url], url
        assert 'href="/news/blog/second/"' in shown[url], url
    assert "Blog" in shown["/news/"]


def test_slug_change_rewrites_the_descendants_urls(site: Tree, mode: str) -> None:
    warm(*PAGES)
    edit(site.blog, slug="journal").save_revision().publish()

    assert status("/blog/") == 404
    assert status("/blog/first/") == 404
    shown = fetch("/", "/journal/", "/journal/first/", "/journal/second/")
    for url in ("/", "/journal/"):
        assert 'href="/journal/first/"' in shown[url], url
        assert 'href="/journal/second/"' in shown[url], url
        assert "/blog/" not in shown[url], url


def test_sweep_subtree_after_a_bulk_update(site: Tree, mode: str) -> None:
    """No signal tells of a QuerySet.update(): sweep_subtree does what a save would."""
    from cachesweeper.contrib.wagtail.subtrees import sweep_subtree

    warm(*PAGES)
    ArticlePage.objects.filter(pk=site.first.pk).update(title="First, bulk")
    sweep_subtree(IndexPage.objects.get(pk=site.blog.pk))

    shown = fetch(*PAGES)
    for url in ("/", "/blog/", "/blog/first/"):
        assert "First, bulk" in shown[url], url


def test_a_draft_save_sweeps_nothing(site: Tree, mode: str) -> None:
    before = warm(*PAGES)
    draft = edit(site.first, title="Draft title", body=[("paragraph", "draft text")])
    with swept() as names:
        draft.save_revision()
    assert names == []
    with missed_keys() as keys:
        assert fetch(*PAGES) == before
    assert keys == []


def test_a_preview_shows_the_draft_and_the_public_never_sees_it(site: Tree, mode: str) -> None:
    draft = edit(site.first, title="Draft title", body=[("paragraph", "draft text")])
    draft.save_revision()
    # A preview first, on a cold cache: nothing it renders may be stored.
    preview = draft.make_preview_request()  # no editor: an anonymous request at the live URL
    assert "Draft title" in preview.content.decode()
    revision = ArticlePage.objects.get(pk=site.first.pk).get_latest_revision_as_object()
    assert "draft text" in revision.make_preview_request().content.decode()

    before = warm(*PAGES)
    assert all("Draft" not in text and "draft text" not in text for text in before.values())
    # A preview of a warm page is not served the live copies either.
    assert "Draft title" in draft.make_preview_request().content.decode()
    with missed_keys() as keys:
        assert fetch(*PAGES) == before
    assert keys == []


def test_an_author_edit(site: Tree, mode: str) -> None:
    warm(*PAGES)
    author = Author.objects.get(pk=site.ada.pk)
    author.name = "Ada Lovelace"
    author.save()

    shown = fetch(*PAGES)
    for url in ("/", "/blog/", "/blog/first/"):
        assert "Ada Lovelace" in shown[url], url


def test_a_footer_snippet_edit(site: Tree, mode: str) -> None:
    warm(*PAGES)
    footer = Footer.objects.get(pk=site.footer.pk)
    footer.text = "(c) 2027"
    footer.save()

    for url, text in fetch(*PAGES).items():
        assert "footer=(c) 2027" in text, url


def test_a_snippet_with_drafts_is_swept_when_published_not_when_drafted(
    site: Tree, mode: str
) -> None:
    before = warm(*PAGES)
    banner = Banner.objects.get(pk=site.banner.pk)
    banner.text = "Draft sale"
    with swept() as names:
        revision = banner.save_revision()
    assert names == []
    with missed_keys() as keys:
        assert fetch(*PAGES) == before
    assert keys == []

    revision.publish()
    for url, text in fetch(*PAGES).items():
        assert "banner=Draft sale" in text, url


def test_a_site_setting_edit(site: Tree, mode: str) -> None:
    warm(*PAGES)
    setting = SiteSettings.objects.get(pk=site.settings.pk)
    setting.tagline = "Goodbye"
    setting.save()

    for url, text in fetch(*PAGES).items():
        assert "tagline=Goodbye" in text, url


# -- the user bar ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["cache_page", "middleware"], indirect=True)
def test_the_userbar_does_not_keep_anonymous_pages_out_of_the_cache(site: Tree, mode: str) -> None:
    """``{% wagtailuserbar %}`` reads ``request.user``: each anonymous visitor's page is alike."""
    anonymous = warm(*PAGES)  # stored: the second fetch rendered nothing
    assert all("wagtail-userbar" not in text for text in anonymous.values())

    editor = Client()
    editor.force_login(User.objects.create_superuser("editor", "e@example.com", "pw"))
    shown = fetch("/blog/first/", client=editor)
    assert "wagtail-userbar" in shown["/blog/first/"]  # the editor's own, not the stored page
    with missed_keys() as keys:
        assert fetch("/blog/first/") == {"/blog/first/": anonymous["/blog/first/"]}
    assert keys == []  # nor did the editor's page replace the stored one


# -- edges -------------------------------------------------------------------------------


@pytest.fixture
def recording_edge() -> Iterator[type[RecordingEdge]]:
    RecordingEdge.reset()
    with override_settings(
        CACHESWEEPER={"EDGES": [{"BACKEND": "tests.edges.recording.RecordingEdge"}]}
    ):
        yield RecordingEdge
    RecordingEdge.reset()


def purged_urls(edge: type[RecordingEdge]) -> set[str]:
    assert queue.purges.flush()
    return {url for _, url in edge.urls()}


@pytest.mark.parametrize("cache_backend", ["locmem"], indirect=True)
def test_edges_purge_a_page_on_every_site(site: Tree, recording_edge: type[RecordingEdge]) -> None:
    edit(site.first, title="First, edited").save_revision().publish()

    urls = purged_urls(recording_edge)
    assert {"http://localhost/blog/first/", "http://other.test/first/"} <= urls
    assert {"http://localhost/blog/", "http://localhost/blog/feed/"} <= urls  # it lists it
    assert {"http://other.test/", "http://other.test/feed/"} <= urls  # the blog is a site root


@pytest.mark.parametrize("cache_backend", ["locmem"], indirect=True)
def test_edges_purge_the_old_urls_of_a_new_slugs_descendants(
    site: Tree, recording_edge: type[RecordingEdge]
) -> None:
    edit(site.blog, slug="journal").save_revision().publish()

    urls = purged_urls(recording_edge)
    assert {"http://localhost/blog/first/", "http://localhost/journal/first/"} <= urls
    assert {"http://localhost/blog/second/", "http://localhost/blog/"} <= urls
    names = recording_edge.names()
    assert f"wagtail_site.articlepage.{site.second.pk}" in names


@pytest.mark.parametrize("cache_backend", ["locmem"], indirect=True)
def test_a_preview_leaves_pending_litespeed_purges_to_a_real_response(site: Tree) -> None:
    """Wagtail discards its preview's response: purges riding on it would never reach the edge."""
    from django.conf import settings

    with override_settings(
        MIDDLEWARE=["cachesweeper.middleware.EdgeMiddleware", *settings.MIDDLEWARE],
        CACHESWEEPER={"EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed"}]},
    ):
        Client().get("/")  # whatever the tree's creation left pending
        footer = Footer.objects.get(pk=site.footer.pk)
        footer.text = "(c) 2027"
        footer.save()  # outside a request: the purge waits for the next response

        preview = edit(site.first, title="Draft title").make_preview_request()
        assert not preview.has_header("X-LiteSpeed-Purge")
        purge = Client().get("/blog/")["X-LiteSpeed-Purge"]
    assert f"tag=wagtail_site.footer.{site.footer.pk}" in purge
