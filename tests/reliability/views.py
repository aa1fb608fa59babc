"""Views and URLconf for the reliability tests (``ROOT_URLCONF="tests.reliability.views"``).

Every view's body is a pure function of what it read (the database, the
request), so a test can always tell which version or which request a
response was built for:

* ``/article/<pk>/``: ``cache_page`` tagged with the article; the view loads
  it (after the page lookup) and answers ``<pk>=<body>;``.
* ``/articles/``: ``cache_page`` with no tags, rendering a fragment on the
  article QuerySet: the page depends on what the fragment saw (Russian doll).
* ``/fragment/<pk>/``: no page cache; a fragment on the article whose body
  is loaded *inside* the fragment (a deferred field).
* ``/echo/...`` and ``/cached/...``: the same description of the request,
  uncached and through ``cache_page``; ``/private/`` per user.
* ``/edge/tag/`` and ``/edge/sweep/``: a fragment tagged, or a sweep of a
  tag, taken from the query string, behind ``EdgeMiddleware``.
* ``/personal/...``: does what its query string asks (read the user, set a
  cookie, use CSRF, the session or the visitor's messages, ``Vary``,
  ``Cache-Control``) for the privacy tests; ``/personal/flash/`` leaves a message.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.urls import URLPattern, path, re_path
from django.utils.cache import patch_cache_control, patch_vary_headers

import cachesweeper
from cachesweeper import cache_page
from cachesweeper.edges import edge_cache
from tests.testapp.models import Article

_ENGINE = engines["django"]

#: A fragment on every article, evaluated inside the fragment (the QuerySet is lazy).
ARTICLES = _ENGINE.from_string(
    "{% load cachesweeper %}{% cachesweeper articles 300 'all' %}"
    "{% for a in articles %}{{ a.pk }}={{ a.body }};{% endfor %}{% endcachesweeper %}"
)
#: A fragment on one article whose body is read inside the fragment.
ONE_ARTICLE = _ENGINE.from_string(
    "{% load cachesweeper %}{% cachesweeper article 300 'one' %}"
    "{{ article.pk }}={{ article.body }};{% endcachesweeper %}"
)
#: The same, for an article that was loaded in full before the fragment ran, and
#: the same again with its own entries for renders outside any request.
EAGER_ARTICLE = _ENGINE.from_string(
    "{% load cachesweeper %}{% cachesweeper article 300 'eager' %}"
    "{{ article.pk }}={{ article.body }};{% endcachesweeper %}"
)
EAGER_TASK = _ENGINE.from_string(
    "{% load cachesweeper %}{% cachesweeper article 300 'task' %}"
    "{{ article.pk }}={{ article.body }};{% endcachesweeper %}"
)
TAGGED = _ENGINE.from_string(
    "{% load cachesweeper %}{% cachesweeper tag 300 %}tagged {{ run }}{% endcachesweeper %}"
)

_runs = itertools.count(1)
_runs_lock = threading.Lock()


def run_number() -> int:
    """A number no other view run got: tells a cached response from a fresh one."""
    with _runs_lock:
        return next(_runs)


def articles_queryset() -> Any:
    return Article.objects.order_by("pk")


def render_articles() -> str:
    return ARTICLES.render({"articles": articles_queryset()})


def render_one(pk: int) -> str:
    return ONE_ARTICLE.render({"article": Article.objects.defer("body").get(pk=pk)})


def render_eager(article: Article) -> str:
    return EAGER_ARTICLE.render({"article": article})


def render_task(article: Article) -> str:
    """What a background task or command would render, outside any request."""
    return EAGER_TASK.render({"article": article})


@cache_page(300, tags=[lambda request, pk: Article(pk=pk)])
def article(request: HttpRequest, pk: int) -> HttpResponse:
    loaded = Article.objects.get(pk=pk)
    return HttpResponse(f"{loaded.pk}={loaded.body};")


@cache_page(300)
def article_list(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_articles())


def fragment(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(render_one(pk))


#: Called by ``eager_fragment`` between loading the article and rendering its fragment.
BETWEEN_LOAD_AND_RENDER: list[Any] = []


def eager_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    """The common view shape: load the instance, then render a template with it."""
    loaded = Article.objects.get(pk=pk)
    for hook in BETWEEN_LOAD_AND_RENDER:
        hook()
    return HttpResponse(render_eager(loaded))


# -- request descriptions ----------------------------------------------------------------


def describe(request: HttpRequest, rest: str) -> str:
    """Everything a page may legitimately vary on, unambiguously (``repr``)."""
    query = sorted(request.GET.lists())
    # Absent and empty are one variant to the page cache (RFC 9111 4.1 would keep them
    # apart; no real view tells them apart).
    language = request.headers.get("Accept-Language", "")
    return repr((request.get_host(), rest, query, language))


def echo(request: HttpRequest, rest: str = "") -> HttpResponse:
    response = HttpResponse(describe(request, rest), content_type="text/plain; charset=utf-8")
    patch_vary_headers(response, ["Accept-Language"])
    return response


cached_echo = cache_page(300)(echo)


@cache_page(300, cacheability="private")
def private(request: HttpRequest) -> HttpResponse:
    name = request.user.username if request.user.is_authenticated else "anonymous"
    return HttpResponse(f"{name} run={run_number()}")


@edge_cache(60)
def edge_tag(request: HttpRequest) -> HttpResponse:
    """A fragment whose dependency (a named tag) comes from the query string."""
    return HttpResponse(TAGGED.render({"tag": request.GET.get("tag", ""), "run": run_number()}))


def edge_sweep(request: HttpRequest) -> HttpResponse:
    """Sweep tags from the query string; LiteSpeed gets the purge on this response."""
    cachesweeper.invalidate_tag(*request.GET.getlist("tag"))
    return HttpResponse("swept")


# -- a view that does what it is asked --------------------------------------------------

#: What ``/personal/`` can be asked to do (``?do=cookie&do=csrf``).
PERSONAL_ACTIONS = (
    "user",  # read request.user
    "cookie",  # set a cookie
    "csrf",  # use a CSRF token
    "session",  # write to the session
    "messages",  # show the visitor's pending messages
    "vary-cookie",  # Vary: Cookie
    "private",  # Cache-Control: private
    "no-store",  # Cache-Control: no-store
)


def personal(request: HttpRequest) -> HttpResponse:
    actions = set(request.GET.getlist("do"))
    body = [f"run={run_number()}"]
    if "user" in actions:
        body.append(f"user={request.user.username or 'anonymous'}")
    if "csrf" in actions:
        body.append(f"csrf={get_token(request)}")
    if "session" in actions:
        request.session["seen"] = request.session.get("seen", 0) + 1
        body.append(f"seen={request.session['seen']}")
    if "messages" in actions:
        body.append(f"messages={'|'.join(map(str, messages.get_messages(request)))}")
    response = HttpResponse(" ".join(body))
    if "cookie" in actions:
        response.set_cookie("flavour", "oatmeal")
    if "vary-cookie" in actions:
        patch_vary_headers(response, ["Cookie"])
    if "private" in actions:
        patch_cache_control(response, private=True)
    if "no-store" in actions:
        patch_cache_control(response, no_store=True)
    return response


def flash(request: HttpRequest) -> HttpResponse:
    """Leave a message for the visitor's next page (a cookie, without a session)."""
    messages.info(request, f"for-you-{run_number()}")
    return HttpResponse("flashed")


cached_personal = cache_page(300)(personal)
edge_personal = edge_cache(60)(personal)


urlpatterns: list[URLPattern] = [
    path("article/<int:pk>/", article),
    path("articles/", article_list),
    path("fragment/<int:pk>/", fragment),
    path("eager/<int:pk>/", eager_fragment),
    re_path(r"^echo/(?P<rest>[\s\S]*)$", echo),
    re_path(r"^cached/(?P<rest>[\s\S]*)$", cached_echo),
    path("private/", private),
    path("edge/tag/", edge_tag),
    path("edge/sweep/", edge_sweep),
    path("personal/plain/", personal),
    path("personal/cached/", cached_personal),
    path("personal/edge/", edge_personal),
    path("personal/flash/", flash),
]
