"""Views for the edge tests (served with ``ROOT_URLCONF="tests.edges.urls"``)."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from cachesweeper import cache_page
from cachesweeper.edges import edge_cache, lscache
from tests.testapp.models import Comment


@edge_cache(60, tags=["frontpage"])
def comment_page(request: HttpRequest, pk: int) -> TemplateResponse:
    comment = Comment.objects.get(pk=pk)
    return TemplateResponse(request, "page_with_fragment.html", {"comment": comment})


@csrf_exempt
def save_comment(request: HttpRequest, pk: int) -> HttpResponse:
    comment = Comment.objects.get(pk=pk)
    comment.text = request.POST.get("text", "edited")
    comment.save()
    return HttpResponse("saved")


@edge_cache(0)
def not_cached(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no")


@edge_cache(60, tags=["cookies"])
def sets_cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("cookie")
    response.set_cookie("a", "b")
    return response


@edge_cache(60, tags=["many"])
def many_names(request: HttpRequest) -> TemplateResponse:
    comments = list(Comment.objects.all())
    return TemplateResponse(request, "comment_list.html", {"comments": comments})


@cache_page(60)
@edge_cache(120, tags=["cached"])
def page_cached(request: HttpRequest) -> HttpResponse:
    return HttpResponse("page")


@csrf_exempt
def save_comment_atomically(request: HttpRequest, pk: int) -> HttpResponse:
    """Saves inside a transaction: the sweep (and the purge) waits for the commit."""
    with transaction.atomic():
        comment = Comment.objects.get(pk=pk)
        comment.text = request.POST.get("text", "edited")
        comment.save()
    return HttpResponse("saved")


@cache_page(60, tags=["listing"])
@edge_cache(90, tags=["edge-tag"])
def tagged_page(request: HttpRequest, pk: int) -> TemplateResponse:
    """Tags from ``cache_page`` and from ``edge_cache`` both end up on the response."""
    comment = Comment.objects.get(pk=pk)
    return TemplateResponse(request, "page_with_fragment.html", {"comment": comment})


@edge_cache(60, tags=["async-page"])
async def async_comment_page(request: HttpRequest, pk: int) -> TemplateResponse:
    comment = await Comment.objects.aget(pk=pk)
    return TemplateResponse(request, "page_with_fragment.html", {"comment": comment})


async def async_plain(request: HttpRequest) -> HttpResponse:
    """No ``edge_cache``: only ``EdgeMiddleware`` judges whether it may be shared."""
    return HttpResponse("plain")


async def async_save_comment(request: HttpRequest, pk: int) -> HttpResponse:
    # No @csrf_exempt: on Django 4.2 it wraps an async view in a sync function.
    # The test client does not enforce CSRF anyway.
    comment = await Comment.objects.aget(pk=pk)
    comment.text = "saved asynchronously"
    await comment.asave()
    return HttpResponse("saved")


@lscache(300, tags=["blog", "frontpage"])
def lscache_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ls")


@lscache(max_age=0)
def lscache_admin(request: HttpRequest) -> HttpResponse:
    return HttpResponse("admin")


urlpatterns = [
    path("comment/<int:pk>/", comment_page),
    path("comment/<int:pk>/save/", save_comment),
    path("comment/<int:pk>/save-atomically/", save_comment_atomically),
    path("comment/<int:pk>/tagged/", tagged_page),
    path("async/comment/<int:pk>/", async_comment_page),
    path("async/comment/<int:pk>/save/", async_save_comment),
    path("async/plain/", async_plain),
    path("not-cached/", not_cached),
    path("cookie/", sets_cookie),
    path("many/", many_names),
    path("lscache/", lscache_view),
    path("page-cached/", page_cached),
    path("lscache-admin/", lscache_admin),
]
