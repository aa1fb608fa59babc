"""Views of the example blog.

Note what is *not* here: no view calls an invalidation function. The writes below
are plain ``save()`` / ``create()`` calls; the ``cachesweeper.register(...)`` lines in
``models.py`` turn them into sweeps, and the next page view re-renders exactly the
fragments that depend on what changed.

QuerySets are handed to templates unevaluated, so a fragment that hits never runs
the query behind it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .forms import ArticleForm, CommentForm
from .models import Article, Comment, Vote


def article_list(request: HttpRequest) -> HttpResponse:
    articles = Article.objects.select_related("author")
    return render(request, "blog/article_list.html", {"articles": articles})


def _detail(
    request: HttpRequest, article: Article, form: CommentForm, status: int = 200
) -> HttpResponse:
    context = {"article": article, "comments": article.comments.all(), "form": form}
    return render(request, "blog/article_detail.html", context, status=status)


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
