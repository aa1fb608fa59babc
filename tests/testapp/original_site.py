"""Models written for the original django-cache-sweeper; only the import line changed.

The original's example app: articles versioned by ``updated_at``, comments
that sweep themselves with the ``ModelSweeper`` mixin, votes that sweep their
comment from a ``post_save`` receiver, and replies swept by the ready-made
``invalidate_cache_handler``. None of them is ``register()``-ed: the old
wiring alone must keep their fragments fresh.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_save

from cachesweeper.utils import ModelSweeper, invalidate_cache_for, invalidate_cache_handler


class OldArticle(models.Model):
    title = models.CharField(blank=True, max_length=100)
    updated_at = models.DateTimeField(auto_now=True)


class OldComment(ModelSweeper, models.Model):
    article = models.ForeignKey(OldArticle, related_name="comments", on_delete=models.CASCADE)
    content = models.TextField(blank=True)
    likes = models.IntegerField(default=0)

    def like_it(self) -> None:
        self.likes += 1


class OldVote(models.Model):
    comment = models.ForeignKey(OldComment, related_name="votes", on_delete=models.CASCADE)


class OldReply(models.Model):
    comment = models.ForeignKey(OldComment, related_name="replies", on_delete=models.CASCADE)
    content = models.TextField(blank=True)


# The original README's receivers, as its users wrote them.
def invalidate_vote_cache(sender: Any, **kwargs: Any) -> None:
    vote = kwargs.get("instance")
    invalidate_cache_for(vote.comment)  # type: ignore[union-attr]


post_save.connect(invalidate_vote_cache, sender=OldVote)


def invalidate_article_cache(sender: Any, **kwargs: Any) -> None:
    article = kwargs.get("instance")
    invalidate_cache_for(article, using="updated_at")  # type: ignore[arg-type]


post_save.connect(invalidate_article_cache, sender=OldArticle)
post_save.connect(invalidate_cache_handler, sender=OldReply)
