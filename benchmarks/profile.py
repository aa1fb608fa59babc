"""Profile one benchmark side with pyinstrument: where does the time go?

    .venv/bin/python -m benchmarks.profile list              # {% cachesweeper_for %} hit
    .venv/bin/python -m benchmarks.profile hit --kind django_redis --seconds 5
    .venv/bin/python -m benchmarks.profile wsgi --kind locmem  # the Python overhead alone

Targets: ``hit`` (scenario 1), ``attribute`` (2), ``list`` (3), ``cold`` (7), ``wsgi``
(6, the WSGI page cache), ``cache_page`` (6, cachesweeper's ``cache_page``). The side
runs in a loop on the stock backend of a freshly started server, pinned to CPU 0 with
the server as the benchmark runs; pyinstrument's text report goes to stdout (``--html
FILE`` writes the interactive one instead).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

TARGETS = ("hit", "attribute", "list", "cold", "wsgi", "cache_page")
KINDS = ("memcached", "memcached_single_hasher", "django_redis", "redis", "locmem")


def side(target: str) -> Callable[[], object]:
    """The cachesweeper side of ``target``, as the benchmark runs it."""
    from benchmarks import scenarios
    from benchmarks.harness import call, template
    from benchmarks.settings import STARTPROJECT_MIDDLEWARE
    from cachesweeper.wsgi import PageCacheMiddleware

    data = scenarios.make_data()
    if target == "wsgi":
        edge = "cachesweeper.middleware.EdgeMiddleware"
        inner = scenarios.handler([edge, *STARTPROJECT_MIDDLEWARE])
        wsgi_cache = PageCacheMiddleware(inner, [("/wsgi", 600, 0)], "default")
        return lambda: call(wsgi_cache, "/wsgi/page/")
    if target == "cache_page":
        django_app = scenarios.handler(STARTPROJECT_MIDDLEWARE)
        return lambda: call(django_app, "/cs/page/")
    if target == "cold":
        cold, numbers = template(scenarios.CS_COLD), itertools.count()
        return lambda: cold({"comment": data.comment, "n": next(numbers)})
    sources: dict[str, tuple[str, dict[str, Any]]] = {
        "hit": (scenarios.CS_COMMENT, {"comment": data.comment}),
        "attribute": (scenarios.CS_PAGE, {"page": data.page}),
        "list": (scenarios.CS_LIST, {"comments": data.comments}),
    }
    source, context = sources[target]
    render = template(source)
    return lambda: render(context)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--kind", default="memcached", choices=KINDS)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--html", type=Path, default=None)
    parser.add_argument("--no-pin", action="store_true", help="do not share CPU 0")
    args = parser.parse_args()
    django.setup()

    from django.core.management import call_command
    from pyinstrument import Profiler

    from benchmarks.harness import VARIANTS, Env, pin
    from benchmarks.timing import Plan
    from tests.servers import MemcachedServer, RedisServer

    call_command("migrate", run_syncdb=True, verbosity=0)
    base = VARIANTS.get(args.kind, (args.kind, {}))[0]
    with contextlib.ExitStack() as stack:
        location, pid = "cachesweeper-profile", 0
        if base == "memcached":
            memcached = MemcachedServer()
            stack.enter_context(memcached)
            location, pid = memcached.location, memcached.pid or 0
        elif base != "locmem":
            redis = RedisServer()
            stack.enter_context(redis)
            location, pid = redis.url, redis.pid or 0
        if not args.no_pin:  # as the benchmark runs: see README, pinning
            pin(0, {0})
            if pid:
                pin(pid, {0})
        with Env(args.kind, location, Plan()).stock():
            func = side(args.target)
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
