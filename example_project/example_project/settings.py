"""Settings for the cachesweeper example blog.

Runs with no servers at all: SQLite and Django's in-process LocMem cache. One
environment variable, ``CACHESWEEPER_CACHE``, points the cache at a real server
instead, so the same demo shows the library against memcached or Redis:

    CACHESWEEPER_CACHE=memcached://127.0.0.1:11211 ./scripts/example
    CACHESWEEPER_CACHE=redis://127.0.0.1:6379/0    ./scripts/example

The edge is LiteSpeed: its backend only adds response headers (``X-LiteSpeed-Tag``,
``X-LiteSpeed-Cache-Control``, ``X-LiteSpeed-Purge``), so it needs no server either;
each page's footer shows them.

Other knobs: ``DJANGO_DEBUG`` (default on), ``DJANGO_SECRET_KEY``,
``DJANGO_ALLOWED_HOSTS`` (comma-separated), ``EXAMPLE_DB`` (SQLite path, used by the
example's own test to run against a throw-away database), ``EXAMPLE_SLOW_VIEW``
(seconds the cached author page takes to render, default 2) and ``EXAMPLE_TOOLBAR``
(``1`` turns on django-debug-toolbar, with cachesweeper's panel).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def cache_from_url(url: str | None) -> dict[str, Any]:
    """Turn ``CACHESWEEPER_CACHE`` into a ``CACHES["default"]`` entry.

    Unset means LocMem: per-process, which is fine for ``runserver`` (one process).
    The backends are Django's own, subclassed in ``blog/cache.py`` only to count each
    request's cache round trips for the footer; a real project names Django's classes
    (``django.core.cache.backends.redis.RedisCache``, ...) directly.
    """
    if not url:
        return {
            "BACKEND": "blog.cache.CountingLocMemCache",
            "LOCATION": "cachesweeper-example",
        }
    parts = urlsplit(url)
    if parts.scheme == "memcached":
        if not parts.hostname:
            raise ImproperlyConfigured(
                f"CACHESWEEPER_CACHE={url!r}: expected memcached://HOST:PORT"
            )
        return {
            "BACKEND": "blog.cache.CountingPyMemcacheCache",
            "LOCATION": f"{parts.hostname}:{parts.port or 11211}",
            "KEY_PREFIX": "cachesweeper-example",
        }
    if parts.scheme in {"redis", "rediss"}:
        # Django's RedisCache takes the URL as it is (host, port, /DB, password).
        return {
            "BACKEND": "blog.cache.CountingRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "cachesweeper-example",
        }
    raise ImproperlyConfigured(
        f"CACHESWEEPER_CACHE={url!r}: use memcached://HOST:PORT or redis://HOST:PORT/DB, "
        "or leave it unset for the in-process LocMem cache"
    )


SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "example-only-insecure-key-do-not-use-in-production"
)
DEBUG = env_flag("DJANGO_DEBUG", True)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "cachesweeper",
    "blog",
]

MIDDLEWARE = [
    # First: it sees the dependencies of everything the response rendered and tags the
    # response for the edges (X-LiteSpeed-Tag), and puts the purges of this request's
    # sweeps on it (X-LiteSpeed-Purge).
    "cachesweeper.middleware.EdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The footer of each page (what cachesweeper did for the request, and the headers above)
# is not a middleware: it is filled in outside all of them, by example_project/wsgi.py.

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB") or BASE_DIR / "db.sqlite3",
    }
}

CACHES = {"default": cache_from_url(os.environ.get("CACHESWEEPER_CACHE"))}

CACHESWEEPER = {
    "CACHE": "default",  # where fragment and page entries live
    "VERSION_CACHE": "default",  # where version counters live (same alias: one round trip per hit)
    # LiteSpeed needs no server here: it only adds response headers, which the footer shows.
    # Behind a real LiteSpeed or OpenLiteSpeed, those headers drive its cache.
    "EDGES": [{"BACKEND": "cachesweeper.edges.LiteSpeed"}],
}

# Seconds the (cached) author page takes to render, so a cache hit is visibly faster.
EXAMPLE_SLOW_VIEW = float(os.environ.get("EXAMPLE_SLOW_VIEW", "2"))

# The messages framework keeps "this request swept ..." across the redirect in a
# cookie, so showing it never touches the session.
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # cachesweeper logs a warning when the cache is unreachable (it fails open) and an
    # error when a sweep cannot reach the version cache: make both visible.
    "loggers": {"cachesweeper": {"handlers": ["console"], "level": "INFO"}},
}


# django-debug-toolbar with cachesweeper's panel, on request: EXAMPLE_TOOLBAR=1 (which
# TOOLBAR=1 ./scripts/example sets, after installing it) and DEBUG. The panel tells the
# footer's story inside the toolbar. Off by default for a reason the footer shows when it
# is on: the toolbar's Request panel reads the session, so every page becomes personal
# and EdgeMiddleware no longer tags any of them for the edge.
if DEBUG and env_flag("EXAMPLE_TOOLBAR", False):
    try:
        from debug_toolbar.settings import PANELS_DEFAULTS
    except ImportError as error:
        raise ImproperlyConfigured(
            "EXAMPLE_TOOLBAR=1 needs django-debug-toolbar: pip install django-debug-toolbar"
        ) from error
    INSTALLED_APPS.append("debug_toolbar")
    # Right after EdgeMiddleware, which must stay first (system check cachesweeper.W003).
    MIDDLEWARE.insert(1, "debug_toolbar.middleware.DebugToolbarMiddleware")
    DEBUG_TOOLBAR_PANELS = [
        *PANELS_DEFAULTS,
        "cachesweeper.contrib.debug_toolbar.CacheSweeperPanel",
    ]
    DEBUG_TOOLBAR_CONFIG = {"SHOW_COLLAPSED": True}
    INTERNAL_IPS = ["127.0.0.1", "::1"]
