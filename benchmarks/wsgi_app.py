"""The WSGI application gunicorn serves in the load test (``benchmarks/load.py``).

Chosen by environment variables: ``BENCH_APP`` (``django_cache_page``,
``cachesweeper_wsgi_cache``, ``cachesweeper_wsgi_cache_no_copies``, ``floor``, or one of
scenario 8's ``holes_*``: Django's stack, the path picks the view),
``BENCH_CACHE_KIND`` and ``BENCH_CACHE_LOCATION`` (the cache server the runner started;
``benchmarks.settings`` reads them too).
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from benchmarks.harness import WSGIApp  # noqa: E402
from benchmarks.scenarios import floor_app, handler  # noqa: E402
from benchmarks.settings import STARTPROJECT_MIDDLEWARE  # noqa: E402
from cachesweeper.wsgi import PageCacheMiddleware  # noqa: E402

_app = os.environ["BENCH_APP"]
application: WSGIApp
if _app == "django_cache_page" or _app.startswith("holes_"):
    if _app.startswith("holes_"):  # its views read an article: this process's own database
        from django.core.management import call_command

        from benchmarks.scenarios import make_data

        call_command("migrate", run_syncdb=True, verbosity=0)
        make_data(list_size=10)
    application = handler(STARTPROJECT_MIDDLEWARE)
elif _app in ("cachesweeper_wsgi_cache", "cachesweeper_wsgi_cache_no_copies"):
    application = PageCacheMiddleware(
        handler(["cachesweeper.middleware.EdgeMiddleware", *STARTPROJECT_MIDDLEWARE]),
        [("/wsgi", 600, 0)],
        "default",
        local_copies=0 if _app.endswith("no_copies") else 8 * 1024 * 1024,
    )
elif _app == "floor":
    application, _prepare = floor_app(
        os.environ["BENCH_CACHE_KIND"], os.environ["BENCH_CACHE_LOCATION"]
    )
    _prepare()
else:
    raise RuntimeError(f"unknown BENCH_APP {_app!r}")
