"""Small helpers the behaviour tests share."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
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
