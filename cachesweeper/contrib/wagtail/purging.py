"""The URLs edges cache a Wagtail page under: on every site that serves it.

Wagtail's ``Page`` has no ``get_absolute_url``; ``get_url_parts()`` names one
site. A page under several sites' roots is cached under each site's host,
and a routable page under each of its ``get_cached_paths()`` (Wagtail's own
frontend-cache convention), so every combination is purged.
"""

from __future__ import annotations

import copy
from typing import Any

from django.http import HttpRequest

from cachesweeper.edges.loading import configured


def page_urls(page: Any) -> list[str]:
    """Full URLs of ``page`` on every site, for edges that purge by URL (none without edges)."""
    if not configured():
        return []
    return site_urls(page)


def site_urls(page: Any) -> list[str]:
    """``page``'s full URL on each site whose root it is under, times its cached paths."""
    from wagtail.models import Site

    roots = Site.get_site_root_paths()
    paths = page.specific_deferred.get_cached_paths()
    urls: dict[str, None] = {}
    for root in roots:
        if not page.url_path.startswith(root.root_path):
            continue
        # get_url_parts() prefers the site of the request: one site at a time.
        request = HttpRequest()
        request._wagtail_site = Site(pk=root.site_id)  # type: ignore[attr-defined]
        request._wagtail_cached_site_root_paths = roots  # type: ignore[attr-defined]
        url = page.get_full_url(request)
        if url:
            urls.update(dict.fromkeys(url + path.lstrip("/") for path in paths))
    return list(urls)


def moved_urls(page: Any, path_before: str, path_after: str) -> list[str]:
    """``page``'s URLs before and after its ``url_path`` prefix changed (a move, a new slug).

    ``page`` holds the new path; the old URLs are what edges cached, and the
    new ones may have been cached as a 404.
    """
    if not configured():
        return []
    before = copy.copy(page)
    before.url_path = path_before + page.url_path[len(path_after) :]
    return list(dict.fromkeys([*site_urls(before), *site_urls(page)]))
