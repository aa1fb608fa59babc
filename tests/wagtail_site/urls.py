"""Wagtail serves every page; ``urls_cached`` serves them through ``cache_page``."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", include(wagtailadmin_urls)),
    path("", include(wagtail_urls)),
]
