"""What ``cachesweeper.contrib.wagtail`` registers, and with which options.

Every page type, every snippet and every site or generic setting. A model
the project registered itself keeps its options (``touch``, ``using``...)
and gains the Wagtail ones: a draft's bookkeeping fields are ignored, and a
page sweeps its specific type's names and purges its URLs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from cachesweeper import registry
from cachesweeper.dependencies import model_names, names_for_pks
from cachesweeper.registration import register
from cachesweeper.registry import PurgeUrls, Tags

#: Fields that saving a draft, or locking, writes alone (``save(update_fields=...)``):
#: nothing visitors see changes, so such a save sweeps nothing.
BOOKKEEPING_FIELDS = (
    "latest_revision",
    "latest_revision_created_at",
    "draft_title",
    "has_unpublished_changes",
    "locked",
    "locked_at",
    "locked_by",
)


def register_all() -> None:
    """Register Wagtail's models (called by the app's ``ready()``)."""
    from cachesweeper.contrib.wagtail.purging import page_urls

    pages = _page_models()
    for model in pages:
        _register(model, tags=page_names, purge_urls=page_urls)
    for model in dict.fromkeys([*_snippet_models(), *_setting_models()]):
        if model not in pages:
            _register(model)


def page_names(page: Any) -> list[str]:
    """The names of a page's specific type, when the page was saved as another type.

    Wagtail saves plain ``Page`` objects when it moves a page or rewrites the
    tree; templates show the specific page (``blog.blogpage.7``), which the
    plain save's own names (``wagtailcore.page.7``) do not reach.
    """
    specific: type[models.Model] | None = page.specific_class
    if specific is None or isinstance(page, specific):
        return []
    return [*names_for_pks(specific, [page.pk]), *model_names(specific)]


def _register(
    model: type[models.Model], tags: Tags | None = None, purge_urls: PurgeUrls | None = None
) -> None:
    ignored = [name for name in BOOKKEEPING_FIELDS if _has_column(model, name)]
    previous = registry.registrations().get(model)
    if previous is None:
        register(model, tags=tags, purge_urls=purge_urls, ignore_fields=ignored)
        return
    register(
        model,
        using=previous.strategy,
        touch=previous.touch,
        tags=_both(previous.tags, tags),
        purge_urls=previous.purge_urls or purge_urls,
        ignore_fields=[*previous.ignore_fields, *ignored],
    )


def _has_column(model: type[models.Model], name: str) -> bool:
    return any(field.name == name for field in model._meta.concrete_fields)


def _both(first: Tags | None, second: Tags | None) -> Tags | None:
    """The project's tags and Wagtail's, together."""
    if first is None or second is None:
        return first if second is None else second

    def tags(instance: Any) -> list[Any]:
        return [*_tags(first, instance), *_tags(second, instance)]

    return tags


def _tags(tags: Tags, instance: Any) -> Iterable[Any]:
    return tags(instance) if callable(tags) else tags


def _page_models() -> list[type[models.Model]]:
    from wagtail.models import get_page_models

    return list(get_page_models())


def _snippet_models() -> list[type[models.Model]]:
    if not apps.is_installed("wagtail.snippets"):
        return []
    from wagtail.snippets import models as snippets

    if snippets.DEFER_REGISTRATION:
        # Its ready() has not run yet: the snippets registered so far are not known.
        raise ImproperlyConfigured(
            "cachesweeper.contrib.wagtail must come after wagtail.snippets in INSTALLED_APPS"
        )
    return list(snippets.get_snippet_models())


def _setting_models() -> list[type[models.Model]]:
    if not apps.is_installed("wagtail.contrib.settings"):
        return []
    from wagtail.contrib.settings.models import BaseGenericSetting, BaseSiteSetting

    return [
        model
        for model in apps.get_models()
        if issubclass(model, (BaseSiteSetting, BaseGenericSetting))
    ]
