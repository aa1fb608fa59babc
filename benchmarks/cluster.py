"""Round trips of latency on a 3-node Redis Cluster, through django-valkey's cluster backend.

    python -m benchmarks.cluster                  # 10 ms per reply, 30 timed renders per shape
    python -m benchmarks.cluster --delay-ms 20 --repeat 50

Starts three ``redis-server --cluster-enabled yes`` masters (``tests.servers.RedisCluster``),
each behind a :class:`~tests.reliability.proxy.CuttableProxy` that hands on every reply
``--delay-ms`` late, and has each node announce its proxy's port
(``cluster-announce-port``), so the client reaches every node through its proxy. The
proxies run in a process of their own, so their work does not compete with the
render's for the GIL. A
shape is timed with the delay and without it (median of ``--repeat``, interleaved);
the difference divided by the delay is the round trips of latency it waits. A request
sent to several nodes at once waits for them together: once.

Shapes: a fragment hit whose entry and token live on different nodes (``1 hit``), a
``{% cachesweeper_for %}`` list of 100 hits (``3 hit``, its 101 keys on every node) and
a sweep of 10 dependencies. Targets (issue 18): ≤ 1.2 round trips for the hit, ≤ 1.5
for the list.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

TARGETS = {"1 hit": 1.2, "3 hit": 1.5}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--delay-ms", type=float, default=10.0, help="latency added per reply")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per shape and side")
    return parser.parse_args(argv)


def nodes_of(cache: Any, keys: list[str]) -> set[str]:
    """The cluster nodes (``host:port``) holding ``keys``, as the client routes them."""
    client = cache.client
    cluster = client.get_client(write=True)
    return {cluster.get_node_from_key(client.make_key(key)).name for key in keys}


def asked_keys(cache: Any, call: Callable[[], object]) -> list[str]:
    """The keys ``call`` reads in its one ``get_many``."""
    asked: list[list[str]] = []
    original = cache.get_many
    cache.__dict__["get_many"] = lambda keys, **kw: asked.append(list(keys)) or original(keys)
    try:
        call()
    finally:
        del cache.__dict__["get_many"]
    return asked[-1]


def serve_proxies(
    targets: list[tuple[str, int]], delay: Synchronized[float], ports: Any, stop: Any
) -> None:
    """Run a delaying proxy per target, their delay read from ``delay``; send ports."""
    from tests.reliability.proxy import CuttableProxy

    class SharedDelay(CuttableProxy):
        @property  # type: ignore[override]
        def delay(self) -> float:
            return delay.value

        @delay.setter
        def delay(self, value: float) -> None:
            pass  # set by the benchmark, through the shared value

    proxies = [SharedDelay(host, port, delay=0.0) for host, port in targets]
    ports.put([proxy.port for proxy in proxies])
    stop.wait()
    for proxy in proxies:
        proxy.close()


def measure(
    shapes: dict[str, Callable[[], object]], shared: Synchronized[float], delay: float, repeat: int
) -> dict[str, dict[str, float]]:
    """``{shape: {"plain": s, "delayed": s, "round trips": n}}``: medians, interleaved."""
    found: dict[str, dict[str, float]] = {}
    for name, call in shapes.items():
        samples: dict[str, list[float]] = {"plain": [], "delayed": []}
        for _ in range(repeat):
            for side, wait in (("plain", 0.0), ("delayed", delay)):
                shared.value = wait
                started = time.perf_counter()
                call()
                samples[side].append(time.perf_counter() - started)
        plain, delayed = (statistics.median(samples[side]) for side in ("plain", "delayed"))
        trips = (delayed - plain) / delay
        found[name] = {"plain": plain, "delayed": delayed, "round trips": trips}
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    django.setup()
    from django.core.cache import caches
    from django.core.management import call_command
    from django.test import override_settings

    from benchmarks import scenarios
    from benchmarks.harness import template
    from cachesweeper import tokens
    from tests.servers import LOOPBACK, RedisCluster

    call_command("migrate", run_syncdb=True, verbosity=0)
    delay = args.delay_ms / 1000
    cluster = RedisCluster()
    spawn = multiprocessing.get_context("spawn")
    shared, ports, stop = spawn.Value("d", 0.0), spawn.Queue(), spawn.Event()
    server: Any = None
    try:
        for node in cluster.nodes:
            node.start()
        targets = [(node.host, node.port) for node in cluster.nodes]
        server = spawn.Process(target=serve_proxies, args=(targets, shared, ports, stop))
        server.start()
        proxy_ports: list[int] = ports.get(timeout=30)
        cluster.form(announce=dict(enumerate(proxy_ports)))
        entry = {
            "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
            "LOCATION": f"valkey://{LOOPBACK}:{proxy_ports[0]}",
            "OPTIONS": {"BASE_CLIENT_KWARGS": {"socket_timeout": 5}},
        }
        with override_settings(CACHES={"default": entry}):
            cache = caches["default"]
            data = scenarios.make_data()
            hit, listed = template(scenarios.CS_COMMENT), template(scenarios.CS_LIST)
            listed({"comments": data.comments})  # stores every item
            # A comment whose entry and token live on different nodes.
            for comment in data.comments:
                hit({"comment": comment})
                keys = asked_keys(cache, lambda comment=comment: hit({"comment": comment}))
                if len(nodes_of(cache, keys)) > 1:
                    break
            list_keys = asked_keys(cache, lambda: listed({"comments": data.comments}))
            names = [f"bench.tag.{n}" for n in range(10)]
            spans = {
                "1 hit": len(nodes_of(cache, keys)),
                "3 hit": len(nodes_of(cache, list_keys)),
                "sweep": len(nodes_of(cache, [tokens.token_key(name) for name in names])),
            }
            shapes: dict[str, Callable[[], object]] = {
                "1 hit": lambda: hit({"comment": comment}),
                "3 hit": lambda: listed({"comments": data.comments}),
                "sweep": lambda: tokens.bump(cache, names),
            }
            found = measure(shapes, shared, delay, args.repeat)
    finally:
        stop.set()
        if server is not None:
            server.join(10)
        cluster.close()

    print(f"3-node Redis Cluster, ClusterValkeyCache, {args.delay_ms:g} ms added per reply")
    print("| shape | keys on nodes | no delay | with delay | round trips | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in found.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else ("met" if row["round trips"] <= target else "MISSED")
        print(
            f"| {name} | {spans[name]} | {row['plain'] * 1e3:.2f} ms | "
            f"{row['delayed'] * 1e3:.2f} ms | {row['round trips']:.2f} | "
            f"{'' if target is None else f'≤ {target:g} '}{verdict} |"
        )
    return 0 if all(found[name]["round trips"] <= TARGETS[name] for name in TARGETS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
