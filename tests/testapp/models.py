"""The original django-cache-sweeper scenario: articles, their comments, votes on comments."""

from __future__ import annotations

from django.db import models

import cachesweeper
from cachesweeper.models import ModelSweeper


class Author(models.Model):
    name = models.CharField(max_length=100)


class Article(models.Model):
    author = models.ForeignKey(Author, null=True, blank=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    topics: models.ManyToManyField[Topic, Topic] = models.ManyToManyField(
        "Topic", blank=True, related_name="articles"
    )

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return f"/article/{self.pk}/"


@cachesweeper.register(touch=["article"])
class Comment(models.Model):
    article = models.ForeignKey(Article, related_name="comments", on_delete=models.CASCADE)
    text = models.TextField()
    status = models.CharField(max_length=20, default="published")

    def vote_total(self) -> int:
        return sum(vote.value for vote in self.votes.all())


class Vote(models.Model):
    comment = models.ForeignKey(Comment, related_name="votes", on_delete=models.CASCADE)
    value = models.IntegerField(default=1)


class Authorship(models.Model):
    """A relationship model: an author is shown on an article through it (a byline)."""

    author = models.ForeignKey(Author, related_name="authorships", on_delete=models.CASCADE)
    article = models.ForeignKey(Article, related_name="authorships", on_delete=models.CASCADE)
    role = models.CharField(max_length=50, blank=True)


class Topic(models.Model):
    name = models.CharField(max_length=50)


class Page(models.Model):
    """Versioned by its ``updated_at`` attribute: fragments need no token round trip."""

    title = models.CharField(max_length=200)
    updated_at = models.DateTimeField(auto_now=True)
    topics: models.ManyToManyField[Topic, Topic] = models.ManyToManyField(
        "Topic", blank=True, related_name="pages"
    )


class Note(models.Model):
    """Belongs to a Page; touching the page moves its ``updated_at``."""

    page = models.ForeignKey(Page, related_name="notes", on_delete=models.CASCADE)
    text = models.TextField()


class Place(models.Model):
    """A concrete parent of multi-table inheritance, not registered itself."""

    name = models.CharField(max_length=100)


class Restaurant(Place):
    """A child of ``Place``: its saves sweep the ``testapp.place`` names too."""

    serves = models.CharField(max_length=100, blank=True)
    visits = models.IntegerField(default=0)
    owner = models.ForeignKey(Author, null=True, blank=True, on_delete=models.SET_NULL)


class Bistro(Restaurant):
    """A grandchild: three tables, three levels of names."""

    chef = models.CharField(max_length=100, blank=True)


class FeaturedRestaurant(Restaurant):
    """A proxy: named as ``Restaurant``, swept through Restaurant's registration."""

    class Meta:
        proxy = True


class SpecialPage(Page):
    """A child of the attribute-versioned ``Page``: ``updated_at`` lives on Page's table."""

    banner = models.CharField(max_length=100, blank=True)


class Legacy(ModelSweeper, models.Model):
    """Uses the original ``ModelSweeper`` mixin instead of ``register()``."""

    text = models.TextField()


cachesweeper.register(Article)
cachesweeper.register(Vote, touch=["comment"])
cachesweeper.register(Topic)
cachesweeper.register(Page, using="updated_at")
cachesweeper.register(Note, touch=["page"])
cachesweeper.register(Restaurant, ignore_fields=("visits", "owner_id"))


# Models written for the original django-cache-sweeper live in their own module.
from tests.testapp import original_site  # noqa: E402, F401
