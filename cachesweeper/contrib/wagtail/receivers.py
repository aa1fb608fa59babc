"""Wagtail's own signals: what a publish, unpublish, move or slug change sweeps.

The page itself is swept by its save (it is registered); these add what
its save does not reach: its parent, whose list of children changed, and on
a move or a new slug every descendant, whose URLs Wagtail rewrote with one
bulk ``UPDATE`` (no signal). A receiver never raises into Wagtail's action.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from cachesweeper.contrib.wagtail.purging import page_urls
from cachesweeper.contrib.wagtail.registration import page_names
from cachesweeper.contrib.wagtail.subtrees import subtree
from cachesweeper.dependencies import hierarchy_names, model_names
from cachesweeper.sweeps import sweep

logger = logging.getLogger("cachesweeper")


def connect() -> None:
    from wagtail.signals import page_published, page_slug_changed, page_unpublished, post_page_move

    page_published.connect(_on_published, dispatch_uid="cachesweeper.wagtail.published")
    page_unpublished.connect(_on_published, dispatch_uid="cachesweeper.wagtail.unpublished")
    post_page_move.connect(_on_moved, dispatch_uid="cachesweeper.wagtail.moved")
    page_slug_changed.connect(_on_slug_changed, dispatch_uid="cachesweeper.wagtail.slug")


def _on_published(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A page went live or offline (unpublished, expired, deleted): so did its parent's child."""
    try:
        names, urls = _pages([instance, instance.get_parent()])
        sweep(names, urls=urls)
    except Exception:
        logger.exception("cachesweeper: could not sweep the publication of %r", instance)


def _on_moved(
    sender: Any,
    instance: Any,
    parent_page_before: Any = None,
    parent_page_after: Any = None,
    url_path_before: str = "",
    url_path_after: str = "",
    **kwargs: Any,
) -> None:
    """A page moved: both parents' children changed, and the subtree's URLs."""
    try:
        names, urls = _pages([parent_page_before, parent_page_after])
        more, subtree_urls = subtree(instance, url_path_before, url_path_after)
        sweep([*names, *more], urls=[*urls, *subtree_urls])
    except Exception:
        logger.exception("cachesweeper: could not sweep the move of %r", instance)


def _on_slug_changed(sender: Any, instance: Any, instance_before: Any, **kwargs: Any) -> None:
    """A new slug gives the page and all its descendants new URLs (sent after the commit)."""
    try:
        names, urls = subtree(instance, instance_before.url_path, instance.url_path)
        sweep(names, urls=urls)
    except Exception:
        logger.exception("cachesweeper: could not sweep the new slug of %r", instance)


def _pages(pages: Iterable[Any]) -> tuple[list[str], list[str]]:
    """Names (at every level, the specific type's too) and URLs of ``pages``."""
    names: list[str] = []
    urls: list[str] = []
    for page in pages:
        if page is None:
            continue
        names += [*hierarchy_names(page), *model_names(type(page)), *page_names(page)]
        urls += page_urls(page)
    return names, urls
