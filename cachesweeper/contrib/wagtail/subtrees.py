"""A page and its descendants: what a move, a new slug or a Site change must sweep."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.contenttypes.models import ContentType

from cachesweeper.contrib.wagtail.purging import moved_urls
from cachesweeper.dependencies import model_names, names_for_pks
from cachesweeper.edges.loading import configured
from cachesweeper.sweeps import sweep


def sweep_subtree(page: Any) -> None:
    """Sweep ``page`` and every descendant, by their specific types, and purge their URLs.

    For what Wagtail's signals do not tell: a ``Site`` whose hostname or root
    page changed, a bulk ``QuerySet.update()`` of pages.
    """
    names, urls = subtree(page, page.url_path, page.url_path)
    sweep(names, urls=urls)


def subtree(page: Any, path_before: str, path_after: str) -> tuple[list[str], list[str]]:
    """Names of ``page`` and its descendants, by their specific types, and their old and new URLs.

    One query for the names (primary keys and content types); the pages
    themselves are loaded only when an edge purges by URL.
    """
    from wagtail.models import Page

    pages = Page.objects.descendant_of(page, inclusive=True)
    names: list[str] = []
    for content_type, pks in _by_type(pages.values_list("content_type_id", "pk")).items():
        model = ContentType.objects.get_for_id(content_type).model_class() or Page
        names += [*names_for_pks(model, pks), *model_names(model)]
    urls: list[str] = []
    if configured():
        for descendant in pages:
            urls += moved_urls(descendant, path_before, path_after)
    return names, urls


def _by_type(rows: Iterable[tuple[int, Any]]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = {}
    for content_type, pk in rows:
        found.setdefault(content_type, []).append(pk)
    return found
