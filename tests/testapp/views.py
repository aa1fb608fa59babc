"""Views for the page-cache tests. Each counts its calls in ``CALLS``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.template.response import TemplateResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.decorators import method_decorator
from django.views import View

from cachesweeper import cache_page, versioned
from cachesweeper.pages import path_key
from tests.testapp.models import Article, Author, Comment

CALLS: Counter[str] = Counter()
_lock = threading.Lock()


def called(name: str) -> int:
    with _lock:
        CALLS[name] += 1
        return CALLS[name]


@cache_page(60)
def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"plain {called('plain')} {request.GET.urlencode()}")


@cache_page(60, tags=["frontpage"])
def tagged(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"tagged {called('tagged')}")


@cache_page(60, tags=[versioned("news")])
def versioned_tag(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"news {called('news')}")


@cache_page(60, tags=[lambda request, pk: Article(pk=pk)])
def article(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(f"article {pk} {called('article')}")


@cache_page(60, tags=[Article])
def article_list(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"list {called('list')}")


@cache_page(60)
def with_fragment(request: HttpRequest, pk: int) -> TemplateResponse:
    called("with_fragment")
    comment = Comment.objects.get(pk=pk)
    return TemplateResponse(request, "page_with_fragment.html", {"comment": comment})


@cache_page(60, key_func=path_key)
def by_path(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"by_path {called('by_path')}")


@cache_page(60)
def sets_cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"cookie {called('cookie')}")
    response.set_cookie("flavour", "oatmeal")
    return response


@cache_page(60)
def private_header(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"private {called('private_header')}")
    patch_cache_control(response, private=True)
    return response


@cache_page(60)
def no_store(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"no-store {called('no_store')}")
    patch_cache_control(response, no_store=True)
    return response


@cache_page(60)
def vary_cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"vary {called('vary_cookie')}")
    patch_vary_headers(response, ["Cookie"])
    return response


@cache_page(60)
def vary_star(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"vary {called('vary_star')}")
    response["Vary"] = "*"
    return response


@cache_page(60)
def vary_language(request: HttpRequest) -> HttpResponse:
    language = request.headers.get("Accept-Language", "-")
    response = HttpResponse(f"{language} {called('vary_language')}")
    patch_vary_headers(response, ["Accept-Language"])
    return response


@cache_page(60)
def uses_session(request: HttpRequest) -> HttpResponse:
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    return HttpResponse(f"visits {visits} {called('session')}")


@cache_page(60)
def uses_csrf(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"token {get_token(request)} {called('csrf')}")


@cache_page(60)
def streaming(request: HttpRequest) -> StreamingHttpResponse:
    count = called("streaming")
    return StreamingHttpResponse(iter([b"stream ", str(count).encode()]))


@cache_page(60)
def status(request: HttpRequest, code: int) -> HttpResponse:
    return HttpResponse(f"status {code} {called(f'status{code}')}", status=code)


@cache_page(60)
def opts_out(request: HttpRequest) -> HttpResponse:
    request.do_not_cache = True  # type: ignore[attr-defined]
    return HttpResponse(f"opt-out {called('opts_out')}")


@cache_page(60, only_if=lambda request: "preview" not in request.GET)
def only_if(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"only-if {called('only_if')}")


@cache_page(60)
def whoami(request: HttpRequest) -> HttpResponse:
    name = request.user.username if request.user.is_authenticated else "anonymous"
    return HttpResponse(f"{name} {called('whoami')}")


@cache_page(60, cacheability="private")
def private_page(request: HttpRequest) -> HttpResponse:
    name = request.user.username if request.user.is_authenticated else "anonymous"
    return HttpResponse(f"{name} {called('private_page')}")


@cache_page(60)
async def async_view(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    return HttpResponse(f"async {called('async')}")


@method_decorator(cache_page(60, tags=["cbv"]), name="dispatch")
class ClassBased(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"class {called('class')}")


@cache_page(60)
def binary(request: HttpRequest) -> HttpResponse:
    called("binary")
    response = HttpResponse(bytes(range(256)) * 4, content_type="application/octet-stream")
    response["Content-Disposition"] = 'attachment; filename="all-bytes.bin"'
    response["X-Custom"] = "kept"
    response["Link"] = "</style.css>; rel=preload"
    return response


SLOW = {"delay": 0.2, "fail": False}


@cache_page(60, tags=["slow"], grace=30)
def slow(request: HttpRequest) -> HttpResponse:
    count = called("slow")
    time.sleep(SLOW["delay"])
    if SLOW["fail"]:
        return HttpResponse("broken", status=503)
    return HttpResponse(f"slow {count}")


@cache_page(60, tags=["slow"], grace=30)
def slow_raises(request: HttpRequest) -> HttpResponse:
    count = called("slow_raises")
    if SLOW["fail"]:
        raise RuntimeError("view exploded")
    return HttpResponse(f"raises {count}")


def fragment_plain(request: HttpRequest, pk: int) -> TemplateResponse:
    """No cache_page: for the WSGI page cache in front of Django."""
    called("fragment_plain")
    comment = Comment.objects.get(pk=pk)
    return TemplateResponse(request, "page_with_fragment.html", {"comment": comment})


@cache_page(60)
def no_cache(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"no-cache {called('no_cache')}")
    patch_cache_control(response, no_cache=True)
    return response


#: The article ``instance_tag`` depends on; the tests create it with this pk.
TAGGED_ARTICLE_PK = 4242


@cache_page(60, tags=Article(pk=TAGGED_ARTICLE_PK))
def instance_tag(request: HttpRequest) -> HttpResponse:
    """A model instance given directly as ``tags=``, not in a list nor from a callable."""
    return HttpResponse(f"instance {called('instance_tag')}")


@cache_page(60, tags=[lambda request: ["sidebar", Author]])
def listed_tags(request: HttpRequest) -> HttpResponse:
    """A callable in ``tags=`` that returns a list of tags."""
    return HttpResponse(f"listed {called('listed_tags')}")


@cache_page(1, tags=["slow"], grace=30)
def slow_expiring(request: HttpRequest) -> HttpResponse:
    """Fresh for one second, then served stale for up to 30 while one request renders."""
    count = called("slow_expiring")
    time.sleep(SLOW["delay"])
    return HttpResponse(f"expiring {count}")


#: ``gated``'s first render waits for ``GATE``; ``ENTERED`` says it has begun.
GATE = threading.Event()
ENTERED = threading.Event()


@cache_page(60, tags=["gated"], grace=30)
def gated(request: HttpRequest) -> HttpResponse:
    """A cold page whose first render is held until the test opens ``GATE``."""
    count = called("gated")
    if count == 1:
        ENTERED.set()
        GATE.wait(10)
    return HttpResponse(f"gated {count}")


@cache_page(60, tags=["slow"], grace=30)
async def async_slow(request: HttpRequest) -> HttpResponse:
    count = called("async_slow")
    await asyncio.sleep(SLOW["delay"])
    return HttpResponse(f"async-slow {count}")


def _site_response(kind: str, count: int, request: HttpRequest) -> HttpResponseBase:
    """What ``site_page`` answers for each kind of response the site-wide cache must judge."""
    text = f"{kind} {count}"
    if kind == "streaming":
        return StreamingHttpResponse(iter([text.encode()]))
    if kind.isdigit():
        return HttpResponse(text, status=int(kind))
    if kind == "whoami":
        user = request.user
        return HttpResponse(f"{user.username if user.is_authenticated else 'anonymous'} {count}")
    if kind == "opts-out":
        request.do_not_cache = True  # type: ignore[attr-defined]
    response = HttpResponse(text)
    if kind == "cookie":
        response.set_cookie("flavour", "oatmeal")
    elif kind in ("private", "no-cache", "no-store"):
        patch_cache_control(response, **{kind.replace("-", "_"): True})
    elif kind == "vary-cookie":
        patch_vary_headers(response, ["Cookie"])
    return response


def site_page(request: HttpRequest, kind: str) -> HttpResponseBase:
    """No cache_page: for the site-wide ``PageCacheMiddleware``. Counts ``site_<kind>``."""
    return _site_response(kind, called(f"site_{kind}"), request)


def site_slow(request: HttpRequest) -> HttpResponse:
    """No cache_page: a slow page for the site-wide cache's grace."""
    count = called("site_slow")
    time.sleep(SLOW["delay"])
    return HttpResponse(f"site-slow {count}")


# -- holes ({% nocache %}) ---------------------------------------------------------------


def _hole_page(template: str) -> Callable[[HttpRequest], TemplateResponse]:
    @cache_page(60, tags=["holes"])
    def view(request: HttpRequest) -> TemplateResponse:
        article = Article.objects.order_by("pk").first()
        comments = list(Comment.objects.order_by("pk"))
        count = called(template)
        context = {"article": article, "comments": comments, "count": count}
        return TemplateResponse(request, f"holes/{template}.html", context)

    return view


hole_form = _hole_page("form")
hole_form_unholed = _hole_page("form_unholed")
hole_login_bar = _hole_page("login_bar")
hole_captured = _hole_page("captured")


def hole_vote(request: HttpRequest) -> HttpResponse:
    """A POST that Django's CSRF check lets through only with the visitor's own token."""
    return HttpResponse("voted")


def hole_in_fragment(request: HttpRequest) -> TemplateResponse:
    """No cache_page: a fragment with a hole, for the WSGI page cache and the edges."""
    called("hole_in_fragment")
    article = Article.objects.order_by("pk").first()
    return TemplateResponse(request, "holes/in_fragment_header.html", {"article": article})


@cache_page(60, tags=["holes"])
async def hole_form_async(request: HttpRequest) -> TemplateResponse:
    """An async view whose page has a CSRF hole: filled off the same path as sync views."""
    await asyncio.sleep(0)
    context = {"article": None, "count": called("form_async")}
    return TemplateResponse(request, "holes/form.html", context)
