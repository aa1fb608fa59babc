"""Settings for the cachesweeper example blog.

Runs with no servers at all: SQLite and Django's in-process LocMem cache. One
environment variable, ``CACHESWEEPER_CACHE``, points the cache at a real server
instead, so the same demo shows the library against memcached or Redis:

    CACHESWEEPER_CACHE=memcached://127.0.0.1:11211 ./scripts/example
    CACHESWEEPER_CACHE=redis://127.0.0.1:6379/0    ./scripts/example

Other knobs: ``DJANGO_DEBUG`` (default on), ``DJANGO_SECRET_KEY``,
``DJANGO_ALLOWED_HOSTS`` (comma-separated) and ``EXAMPLE_DB`` (SQLite path, used by
the example's own test to run against a throw-away database).
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

    Unset means LocMem: per-process, which is fine for ``runserver`` (one process)
    and is exactly what cachesweeper's system check warns about once DEBUG is off.
    """
    if not url:
        return {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "cachesweeper-example",
        }
    parts = urlsplit(url)
    if parts.scheme == "memcached":
        if not parts.hostname:
            raise ImproperlyConfigured(
                f"CACHESWEEPER_CACHE={url!r}: expected memcached://HOST:PORT"
            )
        return {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": f"{parts.hostname}:{parts.port or 11211}",
            "KEY_PREFIX": "cachesweeper-example",
        }
    if parts.scheme in {"redis", "rediss"}:
        # Django's RedisCache takes the URL as it is (host, port, /DB, password).
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
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
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Innermost, so it can still leave a message ("this request swept ...") before
    # MessageMiddleware stores messages on the way out.
    "blog.middleware.CacheEventsMiddleware",
]

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
                "blog.context_processors.cache_events",
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
    "CACHE": "default",  # where fragment entries live
    "VERSION_CACHE": "default",  # where version counters live (same alias: one round trip per hit)
}

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
