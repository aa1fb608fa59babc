"""Every page through ``cachesweeper.cache_page``: Wagtail's ``serve`` view, decorated."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path, re_path
from wagtail import views
from wagtail.admin import urls as wagtailadmin_urls

import cachesweeper

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", include(wagtailadmin_urls)),
    re_path(r"^((?:[\w\-]+/)*)$", cachesweeper.cache_page(600)(views.serve), name="wagtail_serve"),
]
