"""A django-debug-toolbar panel: this request's cached fragments and pages.

    DEBUG_TOOLBAR_PANELS = [
        ...,
        "cachesweeper.contrib.debug_toolbar.CacheSweeperPanel",
    ]

For every fragment and page the request served it lists the state (hit,
miss, stale), the entry key (give it to ``manage.py cachesweeper inspect
--key``), the dependency names and the time measured for it; the cache round
trips cachesweeper made; and the cache and edge headers of the response.
Only this module imports django-debug-toolbar; ``import cachesweeper`` never
does.

**Round trips** are cachesweeper's own calls to its caches during the
request: calls on a key under ``KEY_PREFIX`` (entries, tokens, locks), one per
call whatever the number of keys, nested calls (a backend's ``get_many`` made
of ``get`` calls) counted once. The site's other cache calls are not counted
(the toolbar's Cache panel shows every call). As the toolbar's Cache panel
does, the cache objects of an instrumented request keep a thin wrapper that
does nothing outside one; a cache object so wrapped is read through its
own ``get_many`` / ``get`` (``cachesweeper.reads``), so its reads are counted too.

**Time saved** by a hit or stale serve is how long building that entry took
(from its miss to its store) the last time this process built it while the
panel watched; "unknown" when it was built elsewhere or unwatched. It is what
the hit skipped, before the cost of the hit's own read (in the round trips).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control

from cachesweeper import collector, safety, signals
from cachesweeper.conf import conf
from cachesweeper.edges.loading import configured
from cachesweeper.entries import HIT, MISS, STALE
from cachesweeper.middleware import DEPS_HEADER, edge_headers

try:
    # Imported by name so that type checking never depends on debug_toolbar being
    # installed (its Panel is untyped anyway).
    Panel: Any = import_module("debug_toolbar.panels").Panel
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cachesweeper.contrib.debug_toolbar needs django-debug-toolbar: "
        "pip install django-debug-toolbar"
    ) from error

Record = dict[str, Any]

#: Headers shown when the response carries them (plus each configured edge's tag header).
CACHE_HEADERS = (
    "Cache-Control",
    "Vary",
    "ETag",
    "Age",
    "Expires",
    "Surrogate-Control",
    "Surrogate-Key",
    "Cache-Tag",
    "xkey",
    "X-LiteSpeed-Cache-Control",
    "X-LiteSpeed-Tag",
    "X-LiteSpeed-Purge",
    DEPS_HEADER,
)

#: The cache methods whose calls on cachesweeper's keys are counted as round trips.
CACHE_METHODS = (
    "get",
    "get_many",
    "set",
    "set_many",
    "add",
    "delete",
    "delete_many",
    "touch",
    "incr",
    "decr",
    "has_key",
)

#: Each state's signals: fragments', then pages'.
_SIGNALS = {
    HIT: (signals.fragment_hit, signals.page_hit),
    MISS: (signals.fragment_miss, signals.page_miss),
    STALE: (signals.fragment_stale, signals.page_stale),
}

_BUILD_TIMES_LIMIT = 10_000
#: Entry key -> seconds its last watched build took in this process (see "Time saved").
_build_times: dict[str, float] = {}


@dataclass
class Watch:
    """What one instrumented request saw: serves, builds and cache round trips."""

    records: list[Record] = field(default_factory=list)
    #: Entry key -> (time of its miss, its record), until the entry is stored.
    pending: dict[str, tuple[float, Record]] = field(default_factory=dict)
    round_trips: Counter[str] = field(default_factory=Counter)
    cache_seconds: float = 0.0

    def stored(self, keys: list[str], at: float) -> None:
        """Entries stored in one ``set_many``: each was built from its miss until the next.

        The misses of one batch (a ``cachesweeper_for`` loop) render one after the
        other and are stored together, so one entry's build ends where the next
        one's miss begins, and the last one's where the store begins.
        """
        batch = sorted(
            ((*self.pending.pop(key), key) for key in keys if key in self.pending),
            key=lambda item: item[0],
        )
        for index, (missed_at, record, key) in enumerate(batch):
            ended = batch[index + 1][0] if index + 1 < len(batch) else at
            seconds = max(0.0, ended - missed_at)
            record["built_ms"] = seconds * 1000
            if len(_build_times) >= _BUILD_TIMES_LIMIT:
                _build_times.clear()
            _build_times[key] = seconds


# The watch of the request being served: signals and caches are shared, the
# ContextVar keeps concurrent requests (threads or asyncio tasks) apart.
_watch: ContextVar[Watch | None] = ContextVar("cachesweeper_toolbar", default=None)
# Inside a counted call: the calls it makes in turn are the same round trip.
_inside: ContextVar[bool] = ContextVar("cachesweeper_toolbar_inside", default=False)
_listening = 0
_lock = threading.Lock()


def _receiver(state: str) -> Any:
    def receive(sender: Any, key: str = "", dependencies: Any = (), **kwargs: Any) -> None:
        watch = _watch.get()
        if watch is None:
            return
        record: Record = {
            "state": state,
            "kind": kind(key),
            "key": key,
            "dependencies": list(dependencies),
            "built_ms": None,
            "saved_ms": None,
        }
        if state == MISS:
            watch.pending[key] = (time.perf_counter(), record)
        elif key in _build_times:
            record["saved_ms"] = _build_times[key] * 1000
        watch.records.append(record)

    return receive


_RECEIVERS = {state: _receiver(state) for state in _SIGNALS}


def _ours(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a cache call is about cachesweeper's keys (entries, tokens, locks)."""
    target = args[0] if args else kwargs.get("key", kwargs.get("keys", kwargs.get("data")))
    prefix = f"{conf.KEY_PREFIX}:"
    if isinstance(target, str):
        return target.startswith(prefix)
    if not isinstance(target, (list, tuple, set, dict)):
        return False
    return any(isinstance(key, str) and key.startswith(prefix) for key in target)


def _counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, counting its calls as round trips while a request is watched."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        watch = _watch.get()
        if watch is None or _inside.get() or not _ours(args, kwargs):
            return method(*args, **kwargs)
        inside = _inside.set(True)
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            _inside.reset(inside)
            watch.cache_seconds += time.perf_counter() - started
            watch.round_trips[name] += 1
            if name == "set_many" and args and isinstance(args[0], dict):
                watch.stored([key for key in args[0] if isinstance(key, str)], started)

    call._cachesweeper_counted = True  # type: ignore[attr-defined]
    return call


def _count_cache_calls() -> None:
    """Wrap the methods of this context's cache objects once (inert outside a watch)."""
    for alias in settings.CACHES:
        try:
            cache = caches[alias]
        except Exception:  # a backend that cannot load; not ours to report here
            continue
        for name in CACHE_METHODS:
            method = getattr(cache, name, None)
            if method is not None and not getattr(method, "_cachesweeper_counted", False):
                setattr(cache, name, _counted(name, method))


def _listen() -> None:
    """Connect the receivers while at least one panel watches a request."""
    global _listening
    with _lock:
        _listening += 1
        if _listening == 1:
            for state, pair in _SIGNALS.items():
                for signal in pair:
                    signal.connect(
                        _RECEIVERS[state], weak=False, dispatch_uid=f"cachesweeper.toolbar.{state}"
                    )


def _stop_listening() -> None:
    global _listening
    with _lock:
        _listening = max(0, _listening - 1)
        if _listening == 0:
            for state, pair in _SIGNALS.items():
                for signal in pair:
                    signal.disconnect(dispatch_uid=f"cachesweeper.toolbar.{state}")


def kind(key: str) -> str:
    """``fragment`` or ``page``, from an entry key (``<prefix>:f:<hash>`` / ``<prefix>:p:...``)."""
    parts = key.rsplit(":", 2)
    return {"f": "fragment", "p": "page"}.get(parts[-2] if len(parts) == 3 else "", "entry")


class CacheSweeperPanel(Panel):  # type: ignore[misc]
    """The fragments and pages this request served, its round trips, time saved and headers."""

    title = "cachesweeper"
    template = "cachesweeper/debug_toolbar_panel.html"
    is_async = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._collected = Watch()
        self._token: Token[Watch | None] | None = None

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        counts = stats.get("counts", {})
        trips = stats.get("round_trips", 0)
        return (
            f"{counts.get(HIT, 0)} hits, {counts.get(MISS, 0)} misses, "
            f"{counts.get(STALE, 0)} stale, {trips} round trip{'' if trips == 1 else 's'}"
        )

    def enable_instrumentation(self) -> None:
        if self._token is not None:
            return
        self._collected = Watch()
        self._token = _watch.set(self._collected)
        _count_cache_calls()
        _listen()

    def disable_instrumentation(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        _stop_listening()
        try:
            _watch.reset(token)
        except ValueError:  # disabled from another context than it was enabled in
            _watch.set(None)

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        watch = self._collected
        records = watch.records
        counts = {state: sum(1 for r in records if r["state"] == state) for state in _SIGNALS}
        frame = collector.current()
        if frame is not None:
            dependencies = list(frame.names)
        else:
            dependencies = list(dict.fromkeys(n for r in records for n in r["dependencies"]))
        edges = configured()
        shown = dict.fromkeys([*CACHE_HEADERS, *(e.tag_header for e in edges if e.tag_header)])
        headers = [[name, response[name]] for name in shown if response.has_header(name)]
        predicted = _predicted_edge_headers(request, response, frame) if frame else []
        refusal = safety.refusal(request, response, storing=False, outermost=True)
        # The toolbar's HTML is this request's own: no edge may keep the page it is on.
        patch_cache_control(response, private=True)
        served = [r for r in records if r["state"] != MISS]
        self.record_stats(
            {
                "records": records,
                "counts": counts,
                "total": len(records),
                "dependencies": dependencies,
                "response_headers": headers,
                "edges": [edge.label for edge in edges],
                "predicted_edge_headers": predicted,
                "refusal": refusal,
                "round_trips": sum(watch.round_trips.values()),
                "round_trips_by_call": sorted(watch.round_trips.items()),
                "cache_ms": watch.cache_seconds * 1000,
                "saved_ms": sum(r["saved_ms"] for r in served if r["saved_ms"] is not None),
                "saved_unknown": sum(1 for r in served if r["saved_ms"] is None),
            }
        )


def _predicted_edge_headers(
    request: HttpRequest, response: HttpResponseBase, frame: collector.Frame
) -> list[list[str]]:
    """The tag headers ``EdgeMiddleware`` will add once this panel has run.

    ``EdgeMiddleware`` goes first in ``MIDDLEWARE``, outside the toolbar, so its
    headers are not on the response yet; this is the same computation. Purge
    headers (LiteSpeed) are left out: reading them would consume the purge.
    """
    headers = edge_headers(request, response, frame.names)
    return [[name, value] for name, value in headers.items()]
