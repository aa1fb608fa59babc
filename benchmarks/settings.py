"""Django settings for the benchmarks (``./benchmarks/run``), not for the test suite.

SQLite lives in a temporary directory made at import. ``CACHES`` here is a placeholder:
the runner points ``default`` at the real memcached / Redis it started, one cache kind
at a time, with ``override_settings`` (cachesweeper reads its settings at use time).
The middleware stack is the one ``django-admin startproject`` writes, because that is
what a Django site serving cached pages runs through; the runner adds the cache
middleware each scenario needs in front of or behind it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
SCRATCH = Path(tempfile.mkdtemp(prefix="cachesweeper-bench-"))

SECRET_KEY = "cachesweeper-benchmarks-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "cachesweeper",
    "tests.testapp",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(SCRATCH / "bench.sqlite3"),
    }
}

TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"builtins": []},
    },
]

CACHES: dict[str, Any] = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "cachesweeper-bench-placeholder",
    }
}
if os.environ.get("BENCH_CACHE_KIND"):  # a gunicorn worker of the load test
    from tests.servers import cache_settings

    CACHES = {
        "default": cache_settings(
            os.environ["BENCH_CACHE_KIND"], os.environ["BENCH_CACHE_LOCATION"], counting=False
        )
    }

if os.environ.get("BENCH_CACHEOPS_REDIS"):  # the django-cacheops side of benchmarks.busy
    INSTALLED_APPS.append("cacheops")
    CACHEOPS_REDIS = os.environ["BENCH_CACHEOPS_REDIS"]
    # No QuerySet ops cached: a profile only, so ``{% cached_as %}`` accepts comments
    # and their saves invalidate it.
    CACHEOPS = {"testapp.comment": {"ops": (), "timeout": 600}}

ROOT_URLCONF = "benchmarks.urls"

#: ``django-admin startproject``'s middleware, the stack every page scenario runs through.
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
MIDDLEWARE = list(STARTPROJECT_MIDDLEWARE)

CACHE_MIDDLEWARE_SECONDS = 600
CACHE_MIDDLEWARE_KEY_PREFIX = "site"

CACHESWEEPER: dict[str, Any] = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"cachesweeper": {"handlers": ["console"], "level": "WARNING"}},
}
