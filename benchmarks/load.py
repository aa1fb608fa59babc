"""Page hits under load: a real server, wrk hammering it from a second process.

Each application (Django ``cache_page``, cachesweeper's WSGI page cache with and without
its copies in memory, the floor) is
served in turn by one single-threaded worker on a free loopback port and loaded by one
wrk thread with a few connections, for a fixed time, under two servers:

- **uWSGI** (the ``pyuwsgi`` wheel), ``--http11-socket``: HTTP parsed in C, connections
  kept alive. The targets are read here: the server's own cost per request is the
  smallest, so the applications' costs show.
- **gunicorn**, one sync worker: reported. A sync worker closes the connection after
  every response (it has no keep-alive), so each request also pays a TCP handshake and
  gunicorn's Python HTTP parsing, which weigh more than a cached page itself.

With two cores or more, the server and the cache server share the last CPU (round trips
to the cache on one core, as in the in-process runs) and wrk runs on the others, so the
load generator does not take CPU from the server it measures. The numbers are for
comparing the applications with each other, not for capacity planning.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.harness import all_cpus, pin
from tests.servers import free_port, port_accepts

ROOT = Path(__file__).resolve().parent.parent

#: (name in the results, what it is, the path wrk requests)
APPS = [
    ("django_cache_page", "Django cache_page", "/django/page/"),
    ("cachesweeper_wsgi_cache", "cachesweeper WSGI page cache", "/wsgi/page/"),
    ("cachesweeper_wsgi_cache_no_copies", "the same, local_copies=0", "/wsgi/page/"),
    ("floor", "floor: bare WSGI app, one cache GET", "/"),
]

#: Scenario 8 under load: Django's stack, the page with a CSRF hole, without, uncached.
HOLE_APPS = [
    ("holes_hole", "cache_page hit, CSRF token in a hole", "/holes/page/"),
    ("holes_no_hole", "cache_page hit, the same page without holes", "/holes/none/"),
    ("holes_uncached", "the view uncached, CSRF token in place", "/holes/uncached/"),
]

_APP = "benchmarks.wsgi_app:application"


class Server(NamedTuple):
    name: str  # short, for the targets table
    label: str  # how the report describes it
    executable: str  # in the virtualenv's bin/
    package: str  # what installs it
    argv: Callable[[int], list[str]]  # its arguments, serving on a port


def _uwsgi(port: int) -> list[str]:
    return [
        "--http11-socket", f"127.0.0.1:{port}", "--module", _APP, "--processes", "1",
        "--need-app", "--die-on-term", "--disable-logging",
    ]  # fmt: skip


def _gunicorn(port: int) -> list[str]:
    return [
        _APP, "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "sync",
        "--log-level", "warning",
    ]  # fmt: skip


SERVERS = {
    "uwsgi": Server(
        "uWSGI", "uWSGI, 1 process, `--http11-socket` (keep-alive)", "uwsgi", "pyuwsgi", _uwsgi
    ),
    "gunicorn": Server(
        "gunicorn", "gunicorn, 1 sync worker (no keep-alive)", "gunicorn", "gunicorn", _gunicorn
    ),
}

#: The server whose figures are held against the targets.
TARGET_SERVER = "uwsgi"


def available() -> str | None:
    """Why the load test cannot run at all, or ``None`` when wrk is there."""
    if shutil.which("wrk") is None:
        return "wrk is not installed (apt-get install wrk)"
    return None


def cpus() -> tuple[set[int], set[int]] | None:
    """(the server's and the cache's CPU, wrk's CPUs); ``None`` on one core or without
    ``taskset`` (util-linux), which starts them there."""
    every = sorted(all_cpus())
    if len(every) < 2 or shutil.which("taskset") is None:
        return None
    return {every[-1]}, set(every[:-1])


def run(
    kind: str,
    location: str,
    seconds: float,
    connections: int,
    cache_pid: int | None,
    split: tuple[set[int], set[int]] | None,
    apps: list[tuple[str, str, str]] = APPS,
) -> dict[str, Any]:
    """Requests per second of each application under each server, with wrk's latencies.

    ``split`` is :func:`cpus` (``None``: nothing pinned); ``apps`` :data:`APPS` or
    :data:`HOLE_APPS`.
    """
    if split is not None and cache_pid:
        pin(cache_pid, split[0])
    results: dict[str, Any] = {}
    for server, spec in SERVERS.items():
        about = {"name": spec.name, "label": spec.label}
        if not Path(sys.executable).with_name(spec.executable).exists():
            results[server] = {**about, "skipped": f"pip install {spec.package}"}
            continue
        measured = {
            name: _one(server, name, url_path, kind, location, seconds, connections, split)
            for name, _, url_path in apps
        }
        results[server] = {**about, "apps": measured}
    return results


def _one(
    server: str,
    name: str,
    path: str,
    kind: str,
    location: str,
    seconds: float,
    connections: int,
    split: tuple[set[int], set[int]] | None,
) -> dict[str, Any]:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_APP": name,
        "BENCH_CACHE_KIND": kind,
        "BENCH_CACHE_LOCATION": location,
        "PYTHONPATH": str(ROOT),
    }
    spec = SERVERS[server]
    command = [str(Path(sys.executable).with_name(spec.executable)), *spec.argv(port)]
    server_cpus, wrk_cpus = split if split is not None else (None, None)
    wrk = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    with tempfile.TemporaryFile() as log:  # a pipe nobody reads could fill and block it
        process = subprocess.Popen(
            [*_on(server_cpus), *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_accepts("127.0.0.1", port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    error = log.read().decode(errors="replace")
                    raise RuntimeError(f"{server} did not start for {name}:\n{error[-2000:]}")
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port}{path}"
            for _ in range(3):  # the first request stores the page
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
            output = subprocess.run(
                [*_on(wrk_cpus), *wrk, url], check=True, capture_output=True, text=True
            ).stdout
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return _parse(output)


def _on(cpus: set[int] | None) -> list[str]:
    """The ``taskset`` prefix that starts a command (and what it forks) on ``cpus``."""
    if cpus is None:
        return []
    return ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus)))]


def _parse(output: str) -> dict[str, Any]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    latency = {
        percentile: value
        for percentile, value in re.findall(r"^\s+(50|90|99)%\s+(\S+)$", output, re.MULTILINE)
    }
    return {
        "requests_per_second": float(rate.group(1)) if rate else None,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "latency": latency,
    }
