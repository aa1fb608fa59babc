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
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.views.decorators.cache import cache_page as django_cache_page

import cachesweeper
from tests.testapp.models import Article, Comment

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


# -- holes (scenario 8) ----------------------------------------------------------------
# An article page with a few comments read from the database and a vote form: the
# CSRF token is in a hole, or absent (the same page without holes), or in place (what
# Django serves today: the view runs for every visitor).

_ARTICLE = (
    "{% load cachesweeper %}<!doctype html>\n<html><head><title>{{ article.title }}</title>"
    "</head><body>\n<h1>{{ article.title|title }}</h1>\n"
    + PARAGRAPH
    * 20
    + '{% for comment in comments %}<article id="c{{ comment.pk }}"><p>'
    "{{ comment.text|linebreaksbr }}</p><footer>#{{ comment.pk }} · "
    "{{ comment.text|wordcount }} words</footer></article>\n{% endfor %}"
    '<form method="post" action="/vote/">FORM<button>Vote</button></form>\n</body></html>\n'
)
HOLED = _ARTICLE.replace("FORM", "{% nocache %}{% csrf_token %}{% endnocache %}")
UNHOLED = _ARTICLE.replace("FORM", "")
CSRF_IN_PLACE = _ARTICLE.replace("FORM", "{% csrf_token %}")
#: The hole alone, without Django's cost of making a CSRF token and setting its cookie.
EMPTY_HOLE = _ARTICLE.replace("FORM", "{% nocache %}<!-- no token -->{% endnocache %}")
COMMENTS_SHOWN = 10


def _article_view(source: str) -> Callable[[HttpRequest], HttpResponse]:
    compiled = engines["django"].from_string(source)

    def view(request: HttpRequest) -> HttpResponse:
        article = Article.objects.order_by("pk").first()
        comments = list(Comment.objects.filter(article=article).order_by("pk")[:COMMENTS_SHOWN])
        context = {"article": article, "comments": comments}
        return HttpResponse(compiled.render(context, request))

    return view


hole_page = cachesweeper.cache_page(600, tags=["articles"])(_article_view(HOLED))
no_hole_page = cachesweeper.cache_page(600, tags=["articles"])(_article_view(UNHOLED))
empty_hole_page = cachesweeper.cache_page(600, tags=["articles"])(_article_view(EMPTY_HOLE))


def no_hole_page_with_token(request: HttpRequest) -> HttpResponse:
    """The page without holes, plus what Django does for one CSRF token on any page.

    ``get_token`` draws the token (a new secret for a first visit, a new mask
    always) and has ``CsrfViewMiddleware`` set the cookie: the floor under any
    page that shows a CSRF form, cached or not.
    """
    response = no_hole_page(request)
    get_token(request)
    return response  # type: ignore[no-any-return]


csrf_uncached = _article_view(CSRF_IN_PLACE)
