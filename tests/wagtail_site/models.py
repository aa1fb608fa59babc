"""Page types with a StreamField, an index listing its children, snippets and a setting."""

from __future__ import annotations

from typing import Any

from django.db import models
from modelcluster.fields import ParentalKey
from wagtail import blocks
from wagtail.contrib.settings.models import (
    BaseGenericSetting,
    BaseSiteSetting,
    register_setting,
)
from wagtail.fields import StreamField
from wagtail.models import DraftStateMixin, Orderable, Page, RevisionMixin
from wagtail.snippets.models import register_snippet


class Author(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Footer(models.Model):
    text = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text


class Banner(DraftStateMixin, RevisionMixin, models.Model):
    """A snippet with drafts: its row holds the live text, drafts live in revisions."""

    text = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text


register_snippet(Author)
register_snippet(Footer)
register_snippet(Banner)


@register_setting
class SiteSettings(BaseSiteSetting):
    tagline = models.CharField(max_length=200, blank=True)


class SocialLinks(BaseGenericSetting):
    """Not registered with ``@register_setting``: found as a subclass all the same."""

    mastodon = models.URLField(blank=True)


class HomePage(Page):
    intro = models.CharField(max_length=200, blank=True)

    def get_context(self, request: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context(request, *args, **kwargs)
        context["latest"] = ArticlePage.objects.live().order_by("path")
        return context


class IndexPage(Page):
    intro = models.CharField(max_length=200, blank=True)

    def get_context(self, request: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context(request, *args, **kwargs)
        context["children"] = self.get_children().live().specific().order_by("path")
        return context

    def get_cached_paths(self) -> list[str]:
        """As a ``RoutablePageMixin`` page with a feed would: edges cache both."""
        return ["/", "/feed/"]


class ArticlePage(Page):
    body = StreamField(
        [("heading", blocks.CharBlock()), ("paragraph", blocks.TextBlock())], blank=True
    )


class ArticleAuthor(Orderable):
    """The relationship model: which authors an article shows."""

    page = ParentalKey(ArticlePage, on_delete=models.CASCADE, related_name="article_authors")
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="article_links")
