"""Views and URLconf served behind a real Varnish in ``test_varnish.py``.

Its own ``ROOT_URLCONF`` (set by the test's fixture), so the suite's shared
``tests/urls.py`` and views stay untouched.
"""

from __future__ import annotations

from collections import Counter

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from cachesweeper import cache_page
from cachesweeper.edges import edge_cache
from tests.testapp.models import Comment, Topic

#: How often each view ran: a Varnish hit never reaches Django.
CALLS: Counter[str] = Counter()

#: Number of tags ``many_tags`` adds to its response.
MANY_TAGS = {"count": 0}


@edge_cache(60)
def comment(request: HttpRequest, pk: int) -> TemplateResponse:
    """Depends on the comment through the fragment it renders: tagged ``testapp.comment.<pk>``."""
    CALLS["comment"] += 1
    return TemplateResponse(
        request, "page_with_fragment.html", {"comment": Comment.objects.get(pk=pk)}
    )


@edge_cache(60)
def topic(request: HttpRequest, pk: int) -> HttpResponse:
    """Renders no fragment, so it carries no tags: only a URL purge can remove it."""
    CALLS["topic"] += 1
    return HttpResponse(f"topic {Topic.objects.get(pk=pk).name}")


@cache_page(60, tags=[lambda request, pk: Topic.objects.get(pk=pk)])
@edge_cache(60, tags=["topics"])
def tagged_topic(request: HttpRequest, pk: int) -> HttpResponse:
    """No fragment: its tags are the ``cache_page`` and ``edge_cache`` tags alone."""
    CALLS["tagged_topic"] += 1
    return HttpResponse(f"tagged topic {Topic.objects.get(pk=pk).name}")


def uncached(request: HttpRequest) -> HttpResponse:
    """No ``edge_cache``, no Cache-Control: the shipped VCL must not cache it."""
    CALLS["uncached"] += 1
    return HttpResponse(f"uncached {CALLS['uncached']}")


def many_tags(request: HttpRequest) -> HttpResponse:
    """A response tagged with ``MANY_TAGS["count"]`` tags (the header-limit tests)."""
    CALLS["many_tags"] += 1
    tags = [f"bulk-tag-{index:05d}" for index in range(MANY_TAGS["count"])]

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"tags {CALLS['many_tags']}")

    response: HttpResponse = edge_cache(60, tags=tags)(view)(request)
    return response


@edge_cache(60)
def comment_with_login_link(request: HttpRequest, pk: int) -> TemplateResponse:
    """A login link reads ``request.user``: still one page for every anonymous visitor."""
    CALLS["comment_with_login_link"] += 1
    request.user.is_authenticated  # noqa: B018 (what {% if user.is_authenticated %} does)
    return TemplateResponse(
        request, "page_with_fragment.html", {"comment": Comment.objects.get(pk=pk)}
    )


@edge_cache(60)
def article_comments(request: HttpRequest, pk: int) -> HttpResponse:
    """Counts one article's comments: depends on ``testapp.comment.article=<pk>`` only."""
    CALLS["article_comments"] += 1
    return HttpResponse(f"{Comment.objects.filter(article_id=pk).count()} comments")


urlpatterns: list[URLPattern] = [
    path("article/<int:pk>/comments/", article_comments),
    path("comment/<int:pk>/", comment),
    path("comment/<int:pk>/login-link/", comment_with_login_link),
    path("topic/<int:pk>/", topic),
    path("tagged-topic/<int:pk>/", tagged_topic),
    path("uncached/", uncached),
    path("many-tags/", many_tags),
]
