"""Every page with ``edge_cache``: Wagtail's ``serve`` view, decorated, for the Varnish tests."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path
from wagtail import views

from cachesweeper.edges import edge_cache

urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^((?:[\w\-]+/)*)$", edge_cache(60)(views.serve), name="wagtail_serve"),
]
