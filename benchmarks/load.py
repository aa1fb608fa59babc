"""Page hits under load: gunicorn serving, wrk hammering it from a second process.

Each application (Django ``cache_page``, cachesweeper's WSGI page cache, the floor) is
served in turn by one gunicorn sync worker on a free loopback port and loaded by one
wrk thread with a few connections, for a fixed time. On a 2-core machine that puts the
worker, wrk and the cache server each on a core most of the time; the numbers are for
comparing the applications with each other, not for capacity planning.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import free_port, port_accepts

ROOT = Path(__file__).resolve().parent.parent

#: (name in the results, what it is, the path wrk requests)
APPS = [
    ("django_cache_page", "Django cache_page", "/django/page/"),
    ("cachesweeper_wsgi_cache", "cachesweeper WSGI page cache", "/wsgi/page/"),
    ("floor", "floor: bare WSGI app, one cache GET", "/"),
]


def available() -> str | None:
    """Why the load test cannot run, or ``None`` when gunicorn and wrk are there."""
    if shutil.which("wrk") is None:
        return "wrk is not installed (apt-get install wrk)"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        return "gunicorn is not installed in the virtualenv (pip install gunicorn)"
    return None


def run(kind: str, location: str, seconds: float, connections: int) -> dict[str, Any]:
    """Requests per second of each application in :data:`APPS`, with wrk's latencies."""
    results: dict[str, Any] = {}
    for name, _, path in APPS:
        results[name] = _one(name, path, kind, location, seconds, connections)
    return results


def _one(
    name: str, path: str, kind: str, location: str, seconds: float, connections: int
) -> dict[str, Any]:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_APP": name,
        "BENCH_CACHE_KIND": kind,
        "BENCH_CACHE_LOCATION": location,
        "PYTHONPATH": str(ROOT),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [
        str(gunicorn), "benchmarks.wsgi_app:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "sync",
        "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not port_accepts("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                error = server.stderr.read().decode() if server.stderr else ""
                raise RuntimeError(f"gunicorn did not start for {name}:\n{error[-2000:]}")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}{path}"
        for _ in range(3):  # the first request stores the page
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
        output = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return _parse(output)


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
