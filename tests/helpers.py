"""Small helpers the behaviour tests share."""

from __future__ import annotations

from typing import Any, TypeVar

from django.core.cache import caches
from django.db.models import Model
from django.template import engines


def render(source: str, **context: Any) -> str:
    """Render a Django template string that has ``{% load cachesweeper %}`` prepended."""
    template = engines["django"].from_string("{% load cachesweeper %}" + source)
    return template.render(context).strip()


def calls(alias: str = "default") -> list[str]:
    """The cache calls (round trips) made on ``alias`` since the last :func:`reset`."""
    return list(caches[alias].calls)  # type: ignore[attr-defined]


def reset(alias: str = "default") -> None:
    caches[alias].reset_calls()  # type: ignore[attr-defined]


M = TypeVar("M", bound=Model)


def reloaded(instance: M) -> M:
    """``instance`` loaded again, as the next request or task would load it.

    Outside a request, content built from an instance loaded before a sweep
    of something it depends on is rendered but not stored (it may be older
    than the token): tests that expect storing after a sweep reload first.
    """
    return type(instance)._default_manager.get(pk=instance.pk)
