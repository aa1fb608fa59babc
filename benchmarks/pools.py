"""Memcached pools: how many round trips a hit, a list and a sweep wait, pool reader vs plain.

    python -m benchmarks.pools                          # 3 servers, 20 ms per reply
    python -m benchmarks.pools --servers 3 --delay 0.02 --samples 15
    python -m benchmarks.pools --delay 0                # no proxies: CPU cost, µs per call

Scale scenario for issue 18. Each of ``--servers`` memcached servers sits
behind a proxy (``tests/reliability/proxy.py``) that holds every reply back
``--delay`` seconds, as a network with that round trip would; Django's stock
``PyMemcacheCache`` points at the proxies. Each shape is timed ``--samples``
times through the reader ``reads`` chooses for the pool
(:class:`~cachesweeper.reads.PymemcachePoolReader`: *pool*) and through
:data:`~cachesweeper.reads.PLAIN` (the backend's own calls, one server after
the other: *plain*, what cachesweeper did before), interleaved. The figure is
the median latency divided by ``--delay``: round trips waited (the CPU time
of the render is in it too; it is small next to the delay). The servers each
side asked are counted from the proxies' request logs.

With ``--delay 0`` the servers are used directly, without proxies (the
proxies' threads share the interpreter with the benchmark), and the figure is
the median time per call in microseconds over ``--samples`` loops of
``--loop`` calls: what the pool reader costs on loopback, where a round trip
is nearly free.

Shapes: a fragment hit (scenario 1's comment fragment), a fragment hit whose
entry and token live on different servers, a list of 100 (scenario 3), the
sweep of one article, and the creation of 10 missing counters.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

MEMO = "_cachesweeper_reader"  # where reads keeps a cache object's reader


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pools", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--servers", type=int, default=3, help="memcached servers in the pool")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds added to each reply")
    parser.add_argument("--samples", type=int, default=15, help="timed calls per shape and side")
    parser.add_argument("--loop", type=int, default=200, help="calls per sample with --delay 0")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    django.setup()
    from django.core.cache import caches
    from django.core.management import call_command
    from django.test import override_settings

    from benchmarks import scenarios
    from benchmarks.harness import template
    from cachesweeper import reads, sweeps, tokens
    from cachesweeper.dependencies import hierarchy_names, model_names
    from tests.reliability.proxy import CuttableProxy
    from tests.servers import MemcachedServer, cache_settings

    call_command("migrate", run_syncdb=True, verbosity=0)
    data = scenarios.make_data()
    servers = [MemcachedServer().start() for _ in range(args.servers)]
    direct = not args.delay
    proxies = [] if direct else [CuttableProxy(s.host, s.port, delay=args.delay) for s in servers]
    entry = cache_settings("memcached", servers[0].location, counting=False, timeout=5.0)
    entry["LOCATION"] = [s.location for s in proxies or servers]
    try:
        with override_settings(CACHES={"default": entry}):
            cache = caches["default"]
            cache.clear()
            pool = reads.reader(cache)
            assert isinstance(pool, reads.PymemcachePoolReader), pool

            comment = template(scenarios.CS_COMMENT)
            listed = template(scenarios.CS_LIST)
            cold = template(scenarios.CS_COLD)
            split = _split_fragment(cold, data, cache)
            counters = iter(range(10**9))
            shapes: dict[str, Callable[[], object]] = {
                "fragment hit (scenario 1)": lambda: comment({"comment": data.comment}),
                "fragment hit, entry and token on 2 servers": lambda: cold(
                    {"comment": data.comment, "n": split}
                ),
                "list of 100 hit (scenario 3)": lambda: listed({"comments": data.comments}),
                "sweep of one article": lambda: sweeps.sweep_now(
                    [*hierarchy_names(data.article), *model_names(type(data.article))]
                ),
                "10 missing counters created": lambda: tokens.create_counters(
                    cache, [f"new-{next(counters)}" for _ in range(10)]
                ),
            }
            for call in shapes.values():
                call()  # stored, counters created, connections open
                call()
            if direct:
                unit, scale, per = "µs per call", 1e6 / args.loop, args.loop
                print(f"{args.servers} memcached servers, direct; ", end="")
            else:
                unit, scale, per = "round trips", 1 / args.delay, 1
                print(f"{args.servers} memcached servers, each reply held back ", end="")
                print(f"{args.delay * 1000:g} ms; ", end="")
            print(f"median of {args.samples} samples per side; load {os.getloadavg()[0]:.2f}")
            print(f"| shape | pool: {unit} | plain: {unit} | servers asked |")
            print("| --- | --- | --- | --- |")
            for name, call in shapes.items():
                found: dict[str, list[float]] = {"pool": [], "plain": []}
                asked: dict[str, int] = {}
                for _ in range(args.samples):
                    for side, reader in (("pool", pool), ("plain", reads.PLAIN)):
                        cache.__dict__[MEMO] = reader
                        seconds, asked[side] = _timed(proxies, call, per)
                        found[side].append(seconds * scale)
                cache.__dict__[MEMO] = pool
                servers_asked = asked["pool"] if proxies else "n/a"
                print(
                    f"| {name} | {statistics.median(found['pool']):.2f} "
                    f"| {statistics.median(found['plain']):.2f} | {servers_asked} |"
                )
    finally:
        for proxy in proxies:
            proxy.close()
        for server in servers:
            server.close()
    return 0


def _timed(proxies: list[Any], call: Callable[[], object], times: int = 1) -> tuple[float, int]:
    """Seconds ``times`` calls took, and how many of the proxied servers they asked."""
    marks = [len(proxy.requests) for proxy in proxies]
    start = time.perf_counter()
    for _ in range(times):
        call()
    seconds = time.perf_counter() - start
    asked = sum(
        1 for proxy, mark in zip(proxies, marks, strict=True) if len(proxy.requests) > mark
    )
    return seconds, asked


def _split_fragment(render: Callable[[dict[str, Any]], str], data: Any, cache: Any) -> int:
    """A vary-on value ``n`` whose fragment hit reads from two servers or more."""
    from cachesweeper import pools

    groups: list[int] = []
    original = pools.by_node

    def counted(keys: Any, node_of: Any) -> dict[str, list[str]]:
        found = original(keys, node_of)
        groups.append(len(found))
        return found

    pools.by_node = counted
    try:
        for n in range(100):
            context = {"comment": data.comment, "n": n}
            render(context)
            groups.clear()
            render(context)
            if groups and groups[-1] >= 2:
                return n
    finally:
        pools.by_node = original
    raise RuntimeError("no fragment found whose keys span two servers")


if __name__ == "__main__":
    sys.exit(main())
