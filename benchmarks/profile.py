"""Profile one benchmark side with pyinstrument: where does the time go?

    .venv/bin/python -m benchmarks.profile list              # {% cachesweeper_for %} hit
    .venv/bin/python -m benchmarks.profile hit --kind django_redis --seconds 5

Targets: ``hit`` (scenario 1), ``attribute`` (2), ``list`` (3), ``cold`` (7), ``wsgi``
(6, the WSGI page cache), ``cache_page`` (6, cachesweeper's ``cache_page``). The side
runs in a loop on the stock backend of a freshly started server; pyinstrument's text
report goes to stdout (``--html FILE`` writes the interactive one instead).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

TARGETS = ("hit", "attribute", "list", "cold", "wsgi", "cache_page")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("target", choices=TARGETS)
    kinds = ("memcached", "django_redis", "redis", "locmem")
    parser.add_argument("--kind", default="memcached", choices=kinds)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--html", type=Path, default=None)
    parser.add_argument("--no-pin", action="store_true", help="do not share CPU 0")
    args = parser.parse_args()
    django.setup()

    from django.core.management import call_command
    from pyinstrument import Profiler

    from benchmarks import scenarios
    from benchmarks.harness import Env, call, pin, template
    from benchmarks.settings import STARTPROJECT_MIDDLEWARE
    from benchmarks.timing import Plan
    from cachesweeper.wsgi import PageCacheMiddleware
    from tests.servers import MemcachedServer, RedisServer, ServerProcess

    class NoServer(ServerProcess):
        """LocMem needs no server: profiles show the Python overhead alone."""

        location = "cachesweeper-profile"

        def __init__(self) -> None:
            self._process = None

        def __enter__(self) -> ServerProcess:
            return self

        def close(self) -> None:
            pass

    call_command("migrate", run_syncdb=True, verbosity=0)
    data = scenarios.make_data()
    server: ServerProcess = MemcachedServer() if args.kind == "memcached" else RedisServer()
    if args.kind == "locmem":
        server = NoServer()
    with server:
        location = server.url if isinstance(server, RedisServer) else server.location
        if not args.no_pin:  # as the benchmark runs: see README, pinning
            for pid in (server.pid, 0):
                pin(pid or 0, {0})
        env = Env(args.kind, location, Plan())
        with env.stock():
            func: Callable[[], object]
            if args.target == "hit":
                render = template(scenarios.CS_COMMENT)
                func = lambda: render({"comment": data.comment})  # noqa: E731
            elif args.target == "attribute":
                render = template(scenarios.CS_PAGE)
                func = lambda: render({"page": data.page})  # noqa: E731
            elif args.target == "list":
                render = template(scenarios.CS_LIST)
                func = lambda: render({"comments": data.comments})  # noqa: E731
            elif args.target == "cold":
                render, numbers = template(scenarios.CS_COLD), itertools.count()
                func = lambda: render({"comment": data.comment, "n": next(numbers)})  # noqa: E731
            elif args.target == "wsgi":
                inner = scenarios.handler(
                    ["cachesweeper.middleware.EdgeMiddleware", *STARTPROJECT_MIDDLEWARE]
                )
                app = PageCacheMiddleware(inner, [("/wsgi", 600, 0)], "default")
                func = lambda: call(app, "/wsgi/page/")  # noqa: E731
            else:
                app = scenarios.handler(STARTPROJECT_MIDDLEWARE)
                func = lambda: call(app, "/cs/page/")  # noqa: E731
            func()
            profiler = Profiler(interval=0.0002)
            deadline = time.perf_counter() + args.seconds
            calls = 0
            with profiler:
                while time.perf_counter() < deadline:
                    func()
                    calls += 1
    print(f"{args.target} on {args.kind}: {calls} calls, {args.seconds / calls * 1e6:.1f} µs each")
    if args.html:
        args.html.write_text(profiler.output_html())
    else:
        print(profiler.output_text(unicode=True, color=False, show_all=False))


if __name__ == "__main__":
    main()
