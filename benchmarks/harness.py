"""What every scenario shares: the cache kind under test, round-trip counts, WSGI calls.

A scenario measures each cache kind twice: once on the *counting* backend of
``tests/counting.py`` (deterministic round trips: every outermost cache call is one
round trip) and once on the *stock* backend (time). Both point at the same server.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.core.cache import caches
from django.template import engines
from django.test import override_settings
from django.utils.module_loading import import_string

from benchmarks.timing import Plan, Timing, compare
from tests.servers import cache_settings

#: What the cache kinds are called in the results.
KIND_LABELS = {
    "memcached": "memcached (PyMemcacheCache)",
    "django_redis": "Redis (django-redis)",
    "redis": "Redis (Django's RedisCache)",
    "memcached_single_hasher": "memcached, single-server hasher",
    "locmem": "LocMem (no server: Python overhead only)",
}

#: Kinds that are another kind with extra ``OPTIONS``: (the kind, its options).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "memcached_single_hasher": (
        "memcached",
        {"hasher": "benchmarks.hashers.SingleServerHasher"},
    ),
}

#: Socket timeouts: generous, because setting up a million entries moves a lot of data.
SOCKET_TIMEOUT = 30.0


@dataclass
class Row:
    """One line of the results table: cachesweeper against the Django built-in."""

    scenario: str
    backend: str
    what: str
    ours: str
    baseline_name: str
    theirs: str
    ratio: float | None
    ours_calls: list[str] | None
    theirs_calls: list[str] | None
    target: str
    met: bool | None
    note: str = ""


@dataclass
class Env:
    """The cache kind a scenario runs on, and how long to measure."""

    kind: str
    location: str
    plan: Plan
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, list[str]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    def caches_setting(self, counting: bool) -> dict[str, Any]:
        kind, options = VARIANTS.get(self.kind, (self.kind, {}))
        if "hasher" in options:
            options = {**options, "hasher": import_string(options["hasher"])}
        entry = cache_settings(
            kind, self.location, counting=counting, timeout=SOCKET_TIMEOUT, options=options
        )
        return {"default": entry}

    @property
    def base_kind(self) -> str:
        """``memcached``, ``django_redis``, ``redis`` or ``locmem``."""
        return VARIANTS.get(self.kind, (self.kind, {}))[0]

    @contextmanager
    def counting(self) -> Iterator[None]:
        """``caches["default"]`` is the counting backend of this kind."""
        with override_settings(CACHES=self.caches_setting(counting=True)):
            yield

    @contextmanager
    def stock(self) -> Iterator[None]:
        """``caches["default"]`` is the plain Django backend of this kind."""
        with override_settings(CACHES=self.caches_setting(counting=False)):
            yield

    def count(self, name: str, func: Callable[[], object], warm: bool = True) -> list[str]:
        """The cache calls one call of ``func`` makes (after a warming call)."""
        with self.counting():
            if warm:
                func()
            cache = caches["default"]
            cache.reset_calls()  # type: ignore[attr-defined]
            func()
            calls = list(cache.calls)  # type: ignore[attr-defined]
        self.calls[name] = calls
        return calls

    def time(self, sides: dict[str, Callable[[], object]]) -> dict[str, Timing]:
        """Interleaved medians of every side, on the stock backend."""
        with self.stock():
            timings = compare(sides, self.plan)
        for name, timing in timings.items():
            self.timings[name] = timing.as_dict()
        return timings

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "timings": self.timings,
            "calls": self.calls,
            "rows": [asdict(row) for row in self.rows],
            "extra": self.extra,
        }


def pin(pid: int, cpus: set[int]) -> None:
    """Run every thread of process ``pid`` (0: this one) on ``cpus`` only (Linux)."""
    tasks = Path(f"/proc/{pid or os.getpid()}/task")
    for task in tasks.iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            pass


def all_cpus() -> set[int]:
    return set(range(os.cpu_count() or 1))


def template(source: str) -> Callable[[dict[str, Any]], str]:
    """Compile a Django template once; return its render function."""
    compiled = engines["django"].from_string(source)
    return compiled.render


# -- WSGI --------------------------------------------------------------------------

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "QUERY_STRING": "",
    "SCRIPT_NAME": "",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "localhost",
    "HTTP_ACCEPT": "text/html",
    "HTTP_USER_AGENT": "cachesweeper-benchmarks",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}


def environ(path: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """A GET request for ``path`` as a WSGI server hands it over (``extra``: headers)."""
    return {**_ENVIRON, "PATH_INFO": path, "wsgi.input": io.BytesIO(b""), **(extra or {})}


def call(app: WSGIApp, path: str, extra: dict[str, str] | None = None) -> tuple[str, bytes]:
    """One request through ``app``, the way a WSGI server makes it: status and body."""
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(line)
        return None

    result = app(environ(path, extra), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], body


def fmt_time(seconds: float | None) -> str:
    """A duration with a readable unit."""
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"
