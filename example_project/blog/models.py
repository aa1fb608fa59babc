"""The blog's models and how they are registered with cachesweeper.

The registrations are the whole integration: every save or delete sweeps the
instance's own dependency (``blog.article.3``) and its model's (``blog.article``),
and ``touch`` carries the sweep up the foreign keys, so a new vote re-renders its
comment and the article page that shows the comment - without writing to the
database (counter tokens are bumped instead of ``updated_at`` columns).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

import cachesweeper


class Author(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("blog:author_detail", kwargs={"pk": self.pk})


# The author page is a cached page tagged with its author (`blog.author.2`, see views.py).
cachesweeper.register(Author)


@receiver(post_save, sender=Author)
def author_renamed(sender: type[Author], instance: Author, **kwargs: Any) -> None:
    """Every article fragment shows its author's name: sweep the author's articles too.

    ``touch`` follows foreign keys from child to parent; this goes the other way,
    so it is spelled out: one sweep (one round trip) of ``blog.article.N`` for each
    of the author's articles, and of ``blog.article`` (the lists).
    """
    cachesweeper.invalidate_queryset(instance.articles.all())


class Article(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="articles")
    title = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    body = models.TextField()
    published = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-published", "-id"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("blog:article_detail", kwargs={"slug": self.slug})


# Fragments of one article (`blog.article.3`) and of "any article" (a QuerySet, i.e.
# `blog.article`) are both swept whenever an article is saved or deleted.
cachesweeper.register(Article)


# A comment sweeps itself and, through `touch`, the article it belongs to.
@cachesweeper.register(touch=["article"])
class Comment(models.Model):
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="comments")
    author_name = models.CharField("name", max_length=100)
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.author_name} on {self.article}"

    def score(self) -> int:
        """Sum of the votes. A query per comment - which is why it sits in a cached fragment."""
        total = self.votes.aggregate(total=models.Sum("value"))["total"]
        return int(total or 0)


class Vote(models.Model):
    UP, DOWN = 1, -1
    comment = models.ForeignKey(Comment, on_delete=models.CASCADE, related_name="votes")
    value = models.SmallIntegerField(choices=[(UP, "up"), (DOWN, "down")])

    def __str__(self) -> str:
        return f"{self.value:+d} for comment {self.comment_id}"


# A vote sweeps its comment, and the comment's own `touch` sweeps the article.
cachesweeper.register(Vote, touch=["comment"])
