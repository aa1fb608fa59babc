"""The suite's settings plus Wagtail and the test site (``--ds=tests.wagtail_site.settings``)."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, MIDDLEWARE, TEMPLATES

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "wagtail.contrib.settings",
    "wagtail.snippets",
    "wagtail.users",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "tests.wagtail_site",
    "cachesweeper.contrib.wagtail",
]

MIDDLEWARE = [*MIDDLEWARE]

TEMPLATES[0]["OPTIONS"]["context_processors"] = [
    *TEMPLATES[0]["OPTIONS"]["context_processors"],
    "wagtail.contrib.settings.context_processors.settings",
    "tests.wagtail_site.context.footer",
]

ROOT_URLCONF = "tests.wagtail_site.urls"
WAGTAIL_SITE_NAME = "cachesweeper test site"
WAGTAILADMIN_BASE_URL = "http://localhost"
STATIC_URL = "/static/"
