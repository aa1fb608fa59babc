"""The pages the page-cache and dog-pile scenarios request.

One page (about 8 KB of HTML, like a small article page) is served under every caching
variant, so the variants differ only in how they cache. Like a real page it depends on
something that can be swept: its body is a fragment on the tag ``pages``, so
cachesweeper's page caches store the page against that tag's token and check the token
on every hit (entry and token in one ``get_many``). ``VIEW_CALLS`` counts view
executions for the dog-pile scenario.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.views.decorators.cache import cache_page as django_cache_page

import cachesweeper

PARAGRAPH = (
    "<p>Key-based cache invalidation keeps cached fragments and pages correct under "
    "writes: content remembers the versions of what it depends on.</p>\n"
)
BODY = (
    "<!doctype html>\n<html><head><title>Article</title></head><body>\n"
    + PARAGRAPH * 60
    + "</body></html>\n"
)

_PAGE = engines["django"].from_string(
    '{% load cachesweeper %}{% cachesweeper "pages" 600 %}' + BODY + "{% endcachesweeper %}"
)

SLOW_SECONDS = 0.2

VIEW_CALLS: Counter[str] = Counter()
_lock = threading.Lock()


def _called(name: str) -> None:
    with _lock:
        VIEW_CALLS[name] += 1


def page(request: HttpRequest) -> HttpResponse:
    """The page without a page cache (behind the site-wide and WSGI page caches)."""
    return HttpResponse(_PAGE.render({}))


django_page = django_cache_page(600)(page)
cachesweeper_page = cachesweeper.cache_page(600)(page)


def _slow(name: str) -> HttpResponse:
    _called(name)
    time.sleep(SLOW_SECONDS)
    return HttpResponse(BODY)


@cachesweeper.cache_page(600, tags=["slow"], grace=30)
def slow_grace(request: HttpRequest) -> HttpResponse:
    return _slow("grace")


@cachesweeper.cache_page(600, tags=["slow"])
def slow_no_grace(request: HttpRequest) -> HttpResponse:
    return _slow("no_grace")


@django_cache_page(600)
def slow_django(request: HttpRequest) -> HttpResponse:
    return _slow("django")
