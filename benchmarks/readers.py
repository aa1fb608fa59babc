"""Each client fast path of ``cachesweeper/reads.py`` against the plain reader, A/B.

    python -m benchmarks.readers                      # memcached, redis, django_redis
    python -m benchmarks.readers --kinds django_redis --processes 7

On the same stock backend object, the same hit is timed twice, interleaved (A, B,
A, B, ...): once through the reader ``reads`` chose for that backend (*fast*) and
once through :data:`cachesweeper.reads.PLAIN`, the backend's own ``get_many`` /
``get`` (*plain*). The reader is swapped on the cache object before each call, so
everything else (template, keys, server, process) is the same. Three shapes, the
reads of scenarios 1 to 3 (``benchmarks/scenarios.py``):

- ``1 read`` / ``1 hit``: a counter hit's ``get_many`` of entry and token, alone
  and as the whole ``{% cachesweeper %}`` render;
- ``2 hit``: an attribute hit, one ``get`` of the entry;
- ``3 hit``: a list of 100 items, one ``get_many`` of 101 keys.

Like ``python -m benchmarks``, it pins itself and both servers to one CPU and runs
in ``--processes`` fresh processes; it prints, per shape, the median time of each
side in the median process and every process's ratio fast ÷ plain.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

KINDS = ("memcached", "redis", "django_redis")
MEMO = "_cachesweeper_reader"  # where reads keeps a cache object's reader


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.readers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="cache kinds, comma-separated")
    parser.add_argument("--processes", type=int, default=5, help="fresh processes, odd")
    parser.add_argument("--repeat", type=int, default=15, help="timed loops per side")
    parser.add_argument("--loop-seconds", type=float, default=0.1, help="one timed loop")
    parser.add_argument("--cpu", type=int, default=0, help="CPU shared with the servers")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler decide")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--locations", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(kind: str, location: str, repeat: int, loop_seconds: float) -> dict[str, Any]:
    """``{shape: {"fast": µs, "plain": µs}}`` of one kind, in this process."""
    from django.core.cache import caches

    from benchmarks import scenarios
    from benchmarks.harness import Env, template
    from benchmarks.timing import Plan, compare
    from cachesweeper import reads

    data = scenarios.make_data()
    env = Env(kind, location, Plan(repeat, loop_seconds))
    renders = {
        "1 hit": (template(scenarios.CS_COMMENT), {"comment": data.comment}),
        "2 hit": (template(scenarios.CS_PAGE), {"page": data.page}),
        "3 hit": (template(scenarios.CS_LIST), {"comments": data.comments}),
    }
    results: dict[str, Any] = {}
    with env.stock():
        cache = caches["default"]
        cache.clear()
        for render, context in renders.values():
            render(context)  # store the entries
        fast = reads._choose(cache)
        results["reader"] = type(fast).__name__
        if fast is reads.PLAIN:
            return results
        attributes = cache.__dict__

        # The keys of a counter hit, as the read path asks for them.
        asked: list[list[str]] = []
        original = cache.get_many
        attributes["get_many"] = lambda keys, version=None: asked.append(keys) or original(keys)
        renders["1 hit"][0](renders["1 hit"][1])
        del attributes["get_many"]
        keys = asked[-1]

        def side(reader: reads.Reader, call: Callable[[], object]) -> Callable[[], object]:
            def run() -> object:
                attributes[MEMO] = reader
                return call()

            return run

        shapes: dict[str, Callable[[], object]] = {
            "1 read": lambda: reads.get_many(cache, keys),
            **{
                name: (lambda render=render, context=context: render(context))
                for name, (render, context) in renders.items()
            },
        }
        for name, call in shapes.items():
            timings = compare(
                {"fast": side(fast, call), "plain": side(reads.PLAIN, call)}, env.plan
            )
            results[name] = {side_: timing.median * 1e6 for side_, timing in timings.items()}
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    django.setup()
    from django.core.management import call_command

    from benchmarks.harness import pin
    from tests.servers import MemcachedServer, RedisServer

    kinds = [kind for kind in args.kinds.split(",") if kind]
    if args.worker is not None:
        if not args.no_pin:
            pin(0, {args.cpu})
        call_command("migrate", run_syncdb=True, verbosity=0)
        locations = json.loads(args.locations)
        found = {
            kind: measure(kind, locations[kind], args.repeat, args.loop_seconds) for kind in kinds
        }
        args.worker.write_text(json.dumps(found))
        return 0

    with MemcachedServer() as memcached, RedisServer() as redis:
        locations = {
            "memcached": memcached.location,
            "redis": redis.url,
            "django_redis": redis.url,
        }
        if not args.no_pin:
            for pid in (memcached.pid, redis.pid, 0):
                pin(pid or 0, {args.cpu})
        runs = []
        with tempfile.TemporaryDirectory(prefix="cachesweeper-readers-") as scratch:
            for index in range(args.processes):
                output = Path(scratch) / f"{index}.json"
                command = [
                    sys.executable, "-m", "benchmarks.readers", "--worker", str(output),
                    "--locations", json.dumps(locations), "--kinds", args.kinds,
                    "--repeat", str(args.repeat), "--loop-seconds", str(args.loop_seconds),
                    "--cpu", str(args.cpu),
                ] + (["--no-pin"] if args.no_pin else [])  # fmt: skip
                subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)
                runs.append(json.loads(output.read_text()))
                print(f"process {index + 1} of {args.processes} done", flush=True)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print("| kind | reader | shape | fast µs | plain µs | fast ÷ plain | every process, sorted |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind in kinds:
        reader = runs[0][kind]["reader"]
        shapes = [name for name in runs[0][kind] if name != "reader"]
        if not shapes:
            print(f"| {kind} | {reader} | (plain: nothing to compare) | | | | |")
        for name in shapes:
            rows = sorted(
                (run[kind][name] for run in runs), key=lambda row: row["fast"] / row["plain"]
            )
            middle = rows[(len(rows) - 1) // 2]
            ratios = ", ".join(f"{row['fast'] / row['plain']:.2f}" for row in rows)
            print(
                f"| {kind} | {reader} | {name} | {middle['fast']:.1f} | {middle['plain']:.1f} "
                f"| {middle['fast'] / middle['plain']:.3f} | {ratios} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
