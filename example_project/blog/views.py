"""Views of the example blog.

Note what is *not* here: no view calls an invalidation function. The writes below
are plain ``save()`` / ``create()`` calls; the ``cachesweeper.register(...)`` lines in
``models.py`` turn them into sweeps, and the next page view re-renders exactly the
fragments that depend on what changed.

QuerySets are handed to templates unevaluated, so a fragment that hits never runs
the query behind it.

Two views are cached for the edge (``edge_cache``: ``EdgeMiddleware`` tags their
responses with the names of everything they rendered, in ``X-LiteSpeed-Tag``), and
the author and article pages are cached whole (``cachesweeper.cache_page``). The
article page's forms carry a CSRF token, each visitor's own: the template puts it in a
hole (``{% nocache %}``), so one stored page serves every anonymous visitor, with their
own token filled in.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

import cachesweeper
from cachesweeper.edges import edge_cache

from .forms import ArticleForm, CommentForm
from .models import Article, Author, Comment, Vote


@edge_cache(60)  # LiteSpeed may keep it for a minute; every sweep of what it shows purges it
def article_list(request: HttpRequest) -> HttpResponse:
    articles = Article.objects.select_related("author")
    # The list shows titles and author names: it depends on both models (a list of
    # model classes is one dependency argument to the tag).
    context = {"articles": articles, "list_depends_on": [Article, Author]}
    return render(request, "blog/article_list.html", context)


def _author_of(request: HttpRequest, pk: int) -> Author:
    """A tag callable gets the view's arguments; an unsaved instance with a pk will do."""
    return Author(pk=pk)


# edge_cache goes outside cache_page, so that hits served by cache_page are marked too.
@edge_cache(300)
# The page depends on its tags - its author (`blog.author.N`) and the Article model (a
# new article must appear) - and on every fragment it renders. grace=30: for 30 s after
# a sweep, one request re-renders while the others are served the previous page.
@cachesweeper.cache_page(300, tags=[_author_of, Article], grace=30)
def author_detail(request: HttpRequest, pk: int) -> HttpResponse:
    author = get_object_or_404(Author, pk=pk)
    # An expensive page, made visible: this runs only when the page cache misses.
    time.sleep(settings.EXAMPLE_SLOW_VIEW)
    context = {
        "author": author,
        "articles": author.articles.all(),
        "slow": settings.EXAMPLE_SLOW_VIEW,
    }
    return render(request, "blog/author_detail.html", context)


def _detail(
    request: HttpRequest, article: Article, form: CommentForm, status: int = 200
) -> HttpResponse:
    context = {"article": article, "comments": article.comments.all(), "form": form}
    return render(request, "blog/article_detail.html", context, status=status)


# No tags: the page depends on the fragments it renders (the article and its comments),
# so a vote or a new comment sweeps it too. Its CSRF tokens are holes, filled per visitor.
@cachesweeper.cache_page(600)
def article_detail(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article.objects.select_related("author"), slug=slug)
    return _detail(request, article, CommentForm())


@require_POST
def add_comment(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article.objects.select_related("author"), slug=slug)
    form = CommentForm(request.POST)
    if not form.is_valid():
        return _detail(request, article, form, status=400)
    comment = form.save(commit=False)
    comment.article = article
    comment.save()  # sweeps blog.comment.N and, via touch, blog.article.<article>
    return redirect(f"{article.get_absolute_url()}#comment-{comment.pk}")


@require_POST
def vote(request: HttpRequest, pk: int) -> HttpResponse:
    comment = get_object_or_404(Comment.objects.select_related("article"), pk=pk)
    try:
        value = int(request.POST.get("value", ""))
    except ValueError:
        value = 0
    if value not in (Vote.UP, Vote.DOWN):
        return HttpResponseBadRequest("value must be 1 or -1")
    Vote.objects.create(comment=comment, value=value)  # sweeps vote -> comment -> article
    return redirect(f"{comment.article.get_absolute_url()}#comment-{comment.pk}")


def article_edit(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article, slug=slug)
    form = ArticleForm(request.POST or None, instance=article)
    if request.method == "POST" and form.is_valid():
        form.save()  # sweeps blog.article.N and blog.article (the list page)
        return redirect(article)
    return render(request, "blog/article_form.html", {"article": article, "form": form})
