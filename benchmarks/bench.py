"""Run every scenario on every cache kind and write ``benchmarks/results/``.

Usually started by ``./benchmarks/run`` (which sets up the virtualenv and the servers'
binaries); ``python -m benchmarks --help`` lists the options.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("1", "2", "3", "4", "5", "6", "7", "8")
KINDS = ("memcached", "django_redis", "redis", "memcached_single_hasher")
#: Scenarios that do not depend on the client's per-key cost: not run on the variant.
HASHER_INDEPENDENT = {"4", "5"}
#: Scenarios whose rows are timed ratios, run in several fresh processes (see README).
TIMED = {"1", "2", "3", "6", "7", "8"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run",
        description="cachesweeper against Django's own caching, side by side.",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help=f"cache kinds, comma-separated ({','.join(KINDS)}; also locmem: no server)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="scenario numbers, comma-separated"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=5,
        help="fresh processes the timed scenarios (1, 2, 3, 6, 7, 8) run in, an odd number; "
        "each row is the median process's",
    )
    parser.add_argument(
        "--repeat", type=int, default=9, help="timed loops per side and process (median)"
    )
    parser.add_argument(
        "--loop-seconds", type=float, default=0.1, help="duration of one timed loop"
    )
    parser.add_argument(
        "--sweep-sizes",
        default="10,10000,1000000",
        help="numbers of entries depending on the swept object",
    )
    parser.add_argument("--sweep-samples", type=int, default=300, help="timed sweeps per size")
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        help="CPU that the benchmark and the cache servers share (see README: pinning)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="let the scheduler place the processes"
    )
    parser.add_argument("--load-seconds", type=float, default=5, help="wrk duration per app")
    parser.add_argument(
        "--no-load", action="store_true", help="skip the load test (uWSGI, gunicorn + wrk)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke run (few loops, small sweeps); results go to results/quick.*",
    )
    parser.add_argument("--output", default=None, help="file stem in results/ (default: latest)")
    # Internal: how the main process starts the timed ones (see run_timed_in_processes).
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--locations", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.loop_seconds, args.processes = 5, 0.03, 3
        args.sweep_sizes, args.sweep_samples, args.load_seconds = "10,1000", 50, 2
        args.output = args.output or "quick"
    args.output = args.output or "latest"
    if args.processes < 1 or args.processes % 2 == 0:
        parser.error("--processes must be an odd number (each row is the median process's)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    django.setup()
    from django.core.management import call_command

    from benchmarks import holes, load, scenarios
    from benchmarks.harness import Env, all_cpus, pin
    from benchmarks.report import markdown
    from benchmarks.timing import Plan
    from tests.servers import MemcachedServer, RedisServer

    call_command("migrate", run_syncdb=True, verbosity=0)
    data = scenarios.make_data()
    plan = Plan(repeat=args.repeat, loop_seconds=args.loop_seconds)
    wanted = set(args.scenarios.split(","))
    sizes = [int(size) for size in args.sweep_sizes.split(",")]
    kinds = [kind for kind in args.kinds.split(",") if kind]

    steps: list[tuple[str, Callable[[Env], None]]] = [
        ("1", lambda env: scenarios.fragment_hit_counter(env, data)),
        ("2", lambda env: scenarios.fragment_hit_attribute(env, data)),
        ("3", lambda env: scenarios.fragment_list(env, data)),
        ("7", lambda env: scenarios.cold_render(env, data)),
        ("6", lambda env: scenarios.page_hits(env, data)),
        ("8", lambda env: holes.page_hit_with_hole(env, data)),
        ("5", lambda env: scenarios.dog_pile(env, data)),
        ("4", lambda env: scenarios.sweep_cost(env, data, sizes, args.sweep_samples)),
    ]
    started = time.monotonic()
    load_before = os.getloadavg()[0]

    def run_kinds(locations: dict[str, str], numbers: set[str]) -> list[dict[str, Any]]:
        results = []
        for kind in kinds:
            env = Env(kind, locations[kind], plan)
            with env.stock():
                from django.core.cache import caches

                caches["default"].clear()
            for number, step in steps:
                if number not in numbers:
                    continue
                if kind == "memcached_single_hasher" and number in HASHER_INDEPENDENT:
                    continue
                began = time.monotonic()
                print(f"[{kind}] scenario {number} ...", end=" ", flush=True)
                step(env)
                print(f"{time.monotonic() - began:.1f} s", flush=True)
            results.append(env.as_dict())
        return results

    if args.worker is not None:  # one of the processes of run_timed_in_processes
        if not args.no_pin:
            pin(0, {args.cpu})
        worker_results = run_kinds(json.loads(args.locations), wanted)
        args.worker.write_text(json.dumps(worker_results))
        return 0

    load_results: dict[str, Any] = {}
    holes_load: dict[str, Any] = {}
    # memcached needs room for two million small entries at the largest sweep size.
    memcached, redis = MemcachedServer(memory_mb=2048), RedisServer()
    with memcached, redis:
        locations = {
            "memcached": memcached.location,
            "memcached_single_hasher": memcached.location,
            "django_redis": redis.url,
            "redis": redis.url,
            "locmem": "cachesweeper-bench",  # no server: isolates the Python overhead
        }
        if not args.no_pin:
            for pid in (memcached.pid, redis.pid, 0):
                pin(pid or 0, {args.cpu})
        timed = wanted & TIMED if args.processes > 1 else set()  # 1: all in this process
        runs = run_timed_in_processes(args, locations, timed) if timed else []
        results = merge(runs, run_kinds(locations, wanted - timed))
        for pid in (memcached.pid, redis.pid, 0):  # the load test pins its own way
            pin(pid or 0, all_cpus())
        if "6" in wanted and not args.no_load and "memcached" in kinds:
            reason = load.available()
            if reason is None:
                print("[memcached] load test (uWSGI, gunicorn + wrk) ...", end=" ", flush=True)
                began = time.monotonic()
                split = None if args.no_pin else load.cpus()
                load_results = {
                    "kind": "memcached",
                    "seconds": args.load_seconds,
                    "connections": 8,
                    "cpus": None if split is None else [sorted(part) for part in split],
                    "servers": load.run(
                        "memcached", memcached.location, args.load_seconds, 8, memcached.pid, split
                    ),
                }
                print(f"{time.monotonic() - began:.1f} s", flush=True)
            else:
                load_results = {"skipped": reason}
        if "8" in wanted and not args.no_load and "memcached" in kinds:
            reason = load.available()
            if reason is None:
                print("[memcached] holes under load (uWSGI, gunicorn + wrk) ...", end=" ")
                began = time.monotonic()
                split = None if args.no_pin else load.cpus()
                holes_load = {
                    "kind": "memcached",
                    "seconds": args.load_seconds,
                    "connections": 8,
                    "cpus": None if split is None else [sorted(part) for part in split],
                    "servers": load.run(
                        "memcached", memcached.location, args.load_seconds, 8, memcached.pid,
                        split, load.HOLE_APPS,
                    ),
                }  # fmt: skip
                print(f"{time.monotonic() - began:.1f} s", flush=True)
            else:
                holes_load = {"skipped": reason}

    report = {
        "meta": {
            **meta(args, time.monotonic() - started),
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "kinds": results,
        "load": load_results,
        "holes_load": holes_load,
    }
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / f"{args.output}.json"
    md_path = RESULTS / f"{args.output}.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(report))
    print(md_path.read_text())
    print(f"wrote {md_path} and {json_path}")
    return 0


def run_timed_in_processes(
    args: argparse.Namespace, locations: dict[str, str], numbers: set[str]
) -> list[list[dict[str, Any]]]:
    """Run the timed scenarios in ``args.processes`` fresh processes, one after another.

    A process's memory layout and hash seed shift its timings as a whole, by a few
    per cent from one process to the next, which no number of loops inside one process
    averages out (pyperf spawns processes for the same reason).
    """
    runs = []
    with tempfile.TemporaryDirectory(prefix="cachesweeper-bench-") as scratch:
        for index in range(args.processes):
            print(f"== process {index + 1} of {args.processes}", flush=True)
            output = Path(scratch) / f"{index}.json"
            command = [
                sys.executable, "-m", "benchmarks", "--worker", str(output),
                "--locations", json.dumps(locations), "--kinds", args.kinds,
                "--scenarios", ",".join(sorted(numbers)), "--repeat", str(args.repeat),
                "--loop-seconds", str(args.loop_seconds), "--cpu", str(args.cpu),
            ] + (["--no-pin"] if args.no_pin else [])  # fmt: skip
            subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)
            runs.append(json.loads(output.read_text()))
    return runs


def merge(runs: list[list[dict[str, Any]]], here: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each kind's rows: of each timed row, the median process's; then the ones run here.

    The row keeps every process's ratio (``ratios``). The kind's ``timings`` and
    ``calls`` are the first process's (the round trips are the same in every process);
    every process's own are under ``processes``.
    """
    merged = []
    for position, kind in enumerate(here):
        rows: list[dict[str, Any]] = []
        if runs:
            for versions in zip(*(run[position]["rows"] for run in runs), strict=True):
                ranked = sorted(versions, key=lambda row: row["ratio"] or 0.0)
                chosen = dict(ranked[(len(ranked) - 1) // 2])
                if chosen["ratio"] is not None:
                    chosen["ratios"] = [row["ratio"] for row in versions]
                rows.append(chosen)
            kind = {
                **kind,
                "timings": {**runs[0][position]["timings"], **kind["timings"]},
                "calls": {**runs[0][position]["calls"], **kind["calls"]},
                "processes": [run[position] for run in runs],
            }
        merged.append({**kind, "rows": rows + kind["rows"]})
    return merged


def meta(args: argparse.Namespace, elapsed: float) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent

    def git(*command: str) -> str:
        try:
            return subprocess.run(
                ["git", *command], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    dirty = git("status", "--porcelain", "--", "cachesweeper")
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "library_modified_since_commit": bool(dirty and dirty != "unknown"),
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "processes": args.processes,
        "repeat": args.repeat,
        "loop_seconds": args.loop_seconds,
        "sweep_sizes": args.sweep_sizes,
        "sweep_samples": args.sweep_samples,
        "pinned_to_cpu": None if args.no_pin else args.cpu,
        "elapsed_seconds": round(elapsed, 1),
        "command": "./benchmarks/run " + " ".join(sys.argv[1:]),
    }


if __name__ == "__main__":
    sys.exit(main())
