"""Settings for the journal's scenarios, run in subprocesses (``tests/journal/scenario.py``).

The journal matters across processes, so its tests run Django in processes of
their own, on a database they share: a SQLite file in WAL mode or a
PostgreSQL database, given in the environment with the cache and the edge:

``CS_DB``             ``sqlite:/path/to/file`` or ``postgres:HOST:PORT:USER:NAME``
``CS_CACHE_KIND``     a kind of ``tests.servers.CACHE_KINDS``, with ``CS_CACHE_LOCATION``
``CS_EDGE``           optional: base URL of an HTTP cache purged like Squid
"""

from __future__ import annotations

import os
from typing import Any

import django

from tests.servers import cache_settings
from tests.settings import *  # noqa: F403

_kind, _, _where = os.environ["CS_DB"].partition(":")
if _kind == "sqlite":
    # WAL lets the processes read while one writes; it stays set on the file, which
    # the test's fixture puts in WAL mode before any process opens it. Django 5.1+
    # also takes the write lock when a transaction begins, not at its first write.
    _options: dict[str, Any] = {"timeout": 30}
    if django.VERSION >= (5, 1):
        _options["init_command"] = "PRAGMA synchronous=NORMAL;"
        _options["transaction_mode"] = "IMMEDIATE"
    DATABASES: dict[str, dict[str, Any]] = {  # type: ignore[no-redef]
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _where, "OPTIONS": _options}
    }
else:
    _host, _port, _user, _name = _where.split(":")
    DATABASES = {  # type: ignore[no-redef]
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _name,
            "USER": _user,
            "HOST": _host,
            "PORT": _port,
        }
    }

CACHES = {
    "default": cache_settings(
        os.environ["CS_CACHE_KIND"], os.environ["CS_CACHE_LOCATION"], counting=False, timeout=0.5
    )
}

CACHESWEEPER: dict[str, Any] = {}  # type: ignore[no-redef]
if os.environ.get("CS_EDGE"):
    CACHESWEEPER["EDGES"] = [
        {
            "BACKEND": "cachesweeper.edges.Squid",
            "OPTIONS": {"servers": [os.environ["CS_EDGE"]], "host": "testserver"},
        }
    ]
if os.environ.get("CS_JOURNAL") == "0":
    CACHESWEEPER["JOURNAL"] = False
if os.environ.get("CS_TRIGGERS") == "1":
    CACHESWEEPER["DATABASE_TRIGGERS"] = True
