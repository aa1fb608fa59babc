"""Settings for the stale-read workload, run in a subprocess (``tests/reliability/workload.py``).

The suite's database is in-memory SQLite, which cannot run writers and readers
in concurrent transactions. This runs the same apps on a SQLite *file* in WAL
mode (readers never wait for writers, each thread has its own connection),
with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of deadlocking,
and the cache given in the environment by the test that starts the workload.
"""

from __future__ import annotations

import os
from typing import Any

from tests.servers import cache_settings
from tests.settings import *  # noqa: F403

DATABASES: dict[str, dict[str, Any]] = {  # type: ignore[no-redef]
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["CS_DB_PATH"],
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

CACHES = {
    "default": cache_settings(
        os.environ["CS_CACHE_KIND"], os.environ["CS_CACHE_LOCATION"], counting=False, timeout=2
    )
}

ROOT_URLCONF = "tests.reliability.views"
MIDDLEWARE = []
