"""Views and URLconf served behind a real Varnish in ``test_holes_esi.py``.

Pages with a CSRF form in a hole: through ``cache_page`` (holes filled or
included by ``pages``) and as a fragment in a page no Django page cache
stores (``filling.finish``). ``CountFetches`` counts what reaches Django.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, include, path

from cachesweeper import cache_page
from cachesweeper.edges import edge_cache

#: Requests Django answered, by path: a Varnish hit never gets here.
FETCHES: Counter[str] = Counter()
#: Renders of each view: a Django page cache hit runs none.
CALLS: Counter[str] = Counter()


class CountFetches:
    """Counts every request that reaches Django, by path."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        FETCHES[request.path] += 1
        return self.get_response(request)


@edge_cache(60)
@cache_page(60, tags=["esi-page"])
def page(request: HttpRequest) -> TemplateResponse:
    CALLS["page"] += 1
    context = {"title": "Shared", "count": CALLS["page"], "comment_id": 7}
    return TemplateResponse(request, "esi/page.html", context)


@edge_cache(60)
@cache_page(60, tags=["esi-page"])
def page_reading_user(request: HttpRequest) -> TemplateResponse:
    """Reads the (empty) session, as a login link does: ``Vary: Cookie``, still shared."""
    CALLS["page_reading_user"] += 1
    request.user.is_authenticated  # noqa: B018
    context = {"title": "Shared", "count": CALLS["page_reading_user"], "comment_id": 8}
    return TemplateResponse(request, "esi/page.html", context)


@edge_cache(60)
def fragment(request: HttpRequest) -> TemplateResponse:
    CALLS["fragment"] += 1
    return TemplateResponse(request, "esi/fragment.html", {"title": "Fragment"})


def vote(request: HttpRequest) -> HttpResponse:
    """A POST that Django's CSRF check lets through only with the visitor's own token."""
    return HttpResponse("voted")


urlpatterns: list[URLPattern | URLResolver] = [
    path("page/", page),
    path("page-reading-user/", page_reading_user),
    path("fragment/", fragment),
    path("vote/", vote),
    path("_cachesweeper/", include("cachesweeper.urls")),
]
