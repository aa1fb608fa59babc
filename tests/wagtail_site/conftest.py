"""The test site's tree, built afresh for each test, and the ways its pages are cached.

``site``: root > home (``/``, the default site's root) > blog (``/blog/``, an
index) > two articles; and an empty index ``/news/``. A second site
(``other.test``) has the blog as its root, so articles have a URL on each.
``mode``: pages served with fragments only, through ``cache_page``, or
through the site-wide ``PageCacheMiddleware``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.test import override_settings
from wagtail.coreutils import get_supported_content_language_variant
from wagtail.models import Locale, Page, Site

from tests.wagtail_site.models import (
    ArticleAuthor,
    ArticlePage,
    Author,
    Banner,
    Footer,
    HomePage,
    IndexPage,
    SiteSettings,
)

MODES = ("fragments", "cache_page", "middleware")


@dataclass
class Tree:
    home: HomePage
    blog: IndexPage
    news: IndexPage
    first: ArticlePage
    second: ArticlePage
    ada: Author
    bob: Author
    footer: Footer
    settings: SiteSettings
    banner: Banner


def _article(parent: Page, title: str, slug: str, author: Author) -> ArticlePage:
    article = ArticlePage(
        title=title, slug=slug, body=[("heading", f"{title} heading"), ("paragraph", "text")]
    )
    article.article_authors.add(ArticleAuthor(author=author))
    parent.add_child(instance=article)
    article.save_revision().publish()
    return ArticlePage.objects.get(pk=article.pk)


@pytest.fixture
def site() -> Tree:
    """The tree, on a database a transactional test flushed (Wagtail's own root included)."""
    Locale.objects.get_or_create(
        language_code=get_supported_content_language_variant(settings.LANGUAGE_CODE)
    )
    Site.objects.all().delete()
    root = Page.get_first_root_node()
    if root is None:
        root = Page.add_root(instance=Page(title="Root", slug="root"))
    for child in root.get_children():
        child.delete()
    root = Page.objects.get(pk=root.pk)
    home = root.add_child(instance=HomePage(title="Home", slug="home", intro="Welcome"))
    default = Site.objects.create(
        hostname="localhost", port=80, root_page=home, is_default_site=True
    )
    blog = home.add_child(instance=IndexPage(title="Blog", slug="blog"))
    news = home.add_child(instance=IndexPage(title="News", slug="news"))
    Site.objects.create(hostname="other.test", port=80, root_page=blog)
    ada, bob = Author.objects.create(name="Ada"), Author.objects.create(name="Bob")
    first = _article(blog, "First", "first", ada)
    second = _article(blog, "Second", "second", bob)
    footer = Footer.objects.create(text="(c) 2026")
    banner = Banner(text="Sale")
    banner.save()
    banner.save_revision().publish()
    tagline = SiteSettings.objects.create(site=default, tagline="Hello")
    return Tree(
        HomePage.objects.get(pk=home.pk),
        IndexPage.objects.get(pk=blog.pk),
        IndexPage.objects.get(pk=news.pk),
        first,
        second,
        ada,
        bob,
        footer,
        tagline,
        Banner.objects.get(pk=banner.pk),
    )


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """How pages are cached: always fragments, and maybe the whole page."""
    kind: str = request.param
    if kind == "fragments":
        yield kind
    elif kind == "cache_page":
        with override_settings(ROOT_URLCONF="tests.wagtail_site.urls_cached"):
            yield kind
    else:
        middleware = "cachesweeper.middleware.PageCacheMiddleware"
        with override_settings(
            MIDDLEWARE=[*settings.MIDDLEWARE, middleware],
            CACHESWEEPER={"PAGE_RULES": [("/", 600, 0)]},
        ):
            yield kind
