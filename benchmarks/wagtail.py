"""Issue 17: the Wagtail test site's pages, uncached and cached four ways, in one run.

    python -m benchmarks.wagtail                       # memcached, 15 rounds
    python -m benchmarks.wagtail --cache redis --repeat 15 --articles 20

The site of ``tests/wagtail_site`` (settings: ``benchmarks.wagtail_settings``),
on in-memory SQLite, with its own memcached (or redis-server) from
``tests/servers.py``: a home page listing the latest articles, a blog index
listing its ``--articles`` children, and an article (StreamField, authors
through an ``Orderable``); every page shows a setting, a banner and a footer
snippet. Each page is requested through Django's ``WSGIHandler`` in-process (no
server, no network to the client) by every side, interleaved, ``--repeat``
rounds; the figure is the median (and the best loop, which a busy machine
disturbs least). Sides:

- *uncached*: the templates without cache tags (``benchmarks/templates``);
- *cachesweeper fragments*: the test site's templates as they are;
- *cachesweeper pages*: the same, behind ``PageCacheMiddleware`` (``PAGE_RULES``);
- *wagtail-cache*: the uncached templates behind wagtail-cache's middleware, the
  page cache a Wagtail user would pick;
- *wagtailcache tag*: Wagtail's own ``{% wagtailpagecache %}`` around the page's
  content, ``{% wagtailcache %}`` around the snippets and the setting.

Then the database queries and cache calls (``tests/counting.py``: one call, one
round trip) of one warm request per side, and whether each side
shows an editor's change on the next request: a publish of an article's new title
(``save_revision().publish()``), and an edit of the footer snippet.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.wagtail_settings")

PAGES = {"home": "/", "index": "/blog/", "detail": "/blog/article-1/"}


@dataclass(frozen=True)
class Side:
    """A way of serving the pages: which templates, which middleware around the stack."""

    templates: str
    first: tuple[str, ...] = ()
    last: tuple[str, ...] = ()


SIDES = {
    "uncached": Side("wagtail_bench/plain/"),
    "cachesweeper fragments": Side("wagtail_site/"),
    "cachesweeper pages": Side(
        "wagtail_site/", last=("cachesweeper.middleware.PageCacheMiddleware",)
    ),
    "wagtail-cache": Side(
        "wagtail_bench/plain/",
        first=("wagtailcache.cache.UpdateCacheMiddleware",),
        last=("wagtailcache.cache.FetchFromCacheMiddleware",),
    ),
    "wagtailcache tag": Side("wagtail_bench/wagtail/"),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.wagtail", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cache", choices=("memcached", "redis"), default="memcached")
    parser.add_argument("--repeat", type=int, default=15, help="timed loops per page and side")
    parser.add_argument("--loop", type=float, default=0.1, help="seconds per timed loop")
    parser.add_argument("--articles", type=int, default=10, help="children of the index")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        import wagtailcache  # noqa: F401
    except ImportError:
        # 3.0.0 declares wagtail<8.0: a plain install would downgrade Wagtail.
        sys.exit("wagtail-cache is missing: pip install --no-deps wagtail-cache==3.0.0")
    django.setup()
    from django.core.management import call_command
    from django.test import override_settings

    from tests.servers import MemcachedServer, RedisServer, cache_settings

    call_command("migrate", verbosity=0)
    build_site(args.articles)
    server: MemcachedServer | RedisServer = (
        MemcachedServer() if args.cache == "memcached" else RedisServer()
    )
    server.start()
    entry = cache_settings(args.cache, server.location, counting=False, timeout=5.0)
    counted = cache_settings(args.cache, server.location, timeout=5.0)
    rules = {"PAGE_RULES": [("/", 600, 0)]}
    try:
        with override_settings(CACHES={"default": counted}, CACHESWEEPER=rules):
            calls = count_calls()
        with override_settings(CACHES={"default": entry}, CACHESWEEPER=rules):
            report(args, calls)
    finally:
        server.close()
    return 0


def count_calls() -> dict[tuple[str, str], str]:
    """The cache calls of one warm request, per page and side (``tests/counting.py``).

    Handlers of their own: wagtail-cache's middleware keeps the cache object it
    was made with, so the timed handlers cannot be pointed at the counting backend.
    """
    from django.core.cache import caches

    found: dict[tuple[str, str], str] = {}
    for name, side in SIDES.items():
        app = handler(side)
        for page, path in PAGES.items():
            run = requester(name, app, path)
            run()
            run()
            cache: Any = caches["default"]
            cache.reset_calls()
            run()
            found[page, name] = ", ".join(cache.calls) or "none"
    return found


def report(args: argparse.Namespace, calls: dict[tuple[str, str], str]) -> None:
    """Time, count queries, check freshness; print Markdown tables."""
    import wagtailcache

    from benchmarks.timing import Plan, compare

    apps = {name: handler(side) for name, side in SIDES.items()}
    print(f"Wagtail site, {args.articles} articles in the index; {args.cache}; ", end="")
    print(f"wagtail-cache {wagtailcache.__version__}; median of {args.repeat} loops")
    print(f"of ~{args.loop:g} s per page and side, interleaved; load {os.getloadavg()[0]:.2f}\n")
    print("| page | side | requests/s | best loop | µs/request | spread | queries | cache calls |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for page, path in PAGES.items():
        runs = {name: requester(name, apps[name], path) for name in SIDES}
        timings = compare(runs, Plan(repeat=args.repeat, loop_seconds=args.loop))
        for name, timing in timings.items():
            queries = count_queries(runs[name])
            print(
                f"| {page} | {name} | {1 / timing.median:,.0f} | {1 / min(timing.samples):,.0f} "
                f"| {timing.median * 1e6:,.0f} | {timing.spread:.0%} | {queries} "
                f"| {calls[page, name]} |"
            )
    print("\nFresh on the next request after an editor's change (✅ new content, ❌ stale):\n")
    print("| side | publish: home | publish: index | publish: detail | footer edit: detail |")
    print("| --- | --- | --- | --- | --- |")
    for name in SIDES:
        print(freshness(name, apps[name]))
    with purge_hook():
        print(freshness("wagtail-cache", apps["wagtail-cache"], "wagtail-cache + purge hook"))


def handler(side: Side) -> Any:
    """A ``WSGIHandler`` with the side's middleware (loaded once, at creation)."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=[*side.first, *settings.MIDDLEWARE, *side.last]):
        return WSGIHandler()


def use(templates: str) -> None:
    """Point the page types at a template set: cheap, so sides can interleave per loop."""
    from tests.wagtail_site.models import ArticlePage, HomePage, IndexPage

    for model in (HomePage, IndexPage, ArticlePage):
        model.template = templates + model.template.rsplit("/", 1)[1]


def requester(name: str, app: Any, path: str) -> Callable[[], bytes]:
    """One request for ``path`` as side ``name`` serves it; checks the status."""
    from benchmarks.harness import call

    templates = SIDES[name].templates

    def run() -> bytes:
        use(templates)
        status, body = call(app, path)
        assert status.startswith("200"), (name, path, status)
        return body

    return run


def count_queries(run: Callable[[], bytes]) -> int:
    """Queries of one warm request (the timing warmed it)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured.captured_queries)


def freshness(name: str, app: Any, label: str | None = None) -> str:
    """Warm the pages from an empty cache, publish a new title, edit the footer; look."""
    from django.core.cache import cache

    from tests.wagtail_site.models import ArticlePage, Footer

    cache.clear()
    runs = {page: requester(name, app, path) for page, path in PAGES.items()}
    for run in [*runs.values(), *runs.values()]:
        run()
    title = f"Retitled for {label or name}"
    article = ArticlePage.objects.get(slug="article-1")
    article.title = title
    article.save_revision().publish()
    marks = ["✅" if title in runs[page]().decode() else "❌" for page in PAGES]
    footer = Footer.objects.get()
    footer.text = f"Footer for {label or name}"
    footer.save()
    marks.append("✅" if footer.text in runs["detail"]().decode() else "❌")
    return f"| {label or name} | {' | '.join(marks)} |"


@contextmanager
def purge_hook() -> Iterator[None]:
    """wagtail-cache's documented purge by URL: the page's, its parent's, the home page's.

    Its documentation registers this on the ``after_create_page`` and
    ``after_edit_page`` admin hooks, which only the admin's views call; connected
    here to ``page_published``, which every publish sends. The patterns are anchored:
    the documentation's unanchored root URL (``get_url_parts()[1]``) matches every
    key, and a key matched twice makes ``clear_cache`` raise ``KeyError`` (3.0.0).
    """
    from django.test import override_settings
    from wagtail.signals import page_published
    from wagtailcache.cache import clear_cache

    def purge(sender: Any, instance: Any, **kwargs: Any) -> None:
        pages = (instance, instance.get_parent(), instance.get_site().root_page)
        clear_cache([re.escape(page.full_url) + "$" for page in pages])

    page_published.connect(purge, dispatch_uid="bench-purge")
    try:
        with override_settings(WAGTAIL_CACHE_KEYRING=True):
            yield
    finally:
        page_published.disconnect(dispatch_uid="bench-purge")


def build_site(articles: int) -> None:
    """Home (``/``) > blog index (``/blog/``) > ``articles`` articles, and the snippets."""
    from django.conf import settings
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

    Locale.objects.get_or_create(
        language_code=get_supported_content_language_variant(settings.LANGUAGE_CODE)
    )
    Site.objects.all().delete()
    root = Page.get_first_root_node()
    assert root is not None, "Wagtail's migrations make the root page"
    for child in root.get_children():
        child.delete()
    root = Page.objects.get(pk=root.pk)
    home = root.add_child(instance=HomePage(title="Home", slug="home", intro="Welcome"))
    site = Site.objects.create(hostname="localhost", port=80, root_page=home, is_default_site=True)
    blog = home.add_child(instance=IndexPage(title="Blog", slug="blog"))
    authors = [Author.objects.create(name=name) for name in ("Ada", "Bob", "Cy")]
    for n in range(1, articles + 1):
        body = [("heading", f"Article {n}")] + [("paragraph", "Some text. " * 40)] * 5
        article = ArticlePage(title=f"Article {n}", slug=f"article-{n}", body=body)
        for author in authors[: 1 + n % 3]:
            article.article_authors.add(ArticleAuthor(author=author))
        blog.add_child(instance=article)
        article.save_revision().publish()
    Footer.objects.create(text="(c) 2026")
    banner = Banner(text="Sale")
    banner.save()
    banner.save_revision().publish()
    SiteSettings.objects.create(site=site, tagline="Hello")


if __name__ == "__main__":
    sys.exit(main())
