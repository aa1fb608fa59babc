"""A django-debug-toolbar panel: this request's cached fragments and pages.

    DEBUG_TOOLBAR_PANELS = [
        ...,
        "cachesweeper.contrib.debug_toolbar.CacheSweeperPanel",
    ]

For every fragment and page the request served it lists the state (hit,
miss, stale), the entry key (give it to ``manage.py cachesweeper inspect
--key``) and the dependency names, with counts in the side bar; and the
cache and edge headers of the response. Only this module imports
django-debug-toolbar; ``import cachesweeper`` never does. Round trips are in
the toolbar's own Cache panel.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from importlib import import_module
from typing import Any

from django.http import HttpRequest, HttpResponseBase

from cachesweeper import collector, signals
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

_SIGNALS = {HIT: signals.fragment_hit, MISS: signals.fragment_miss, STALE: signals.fragment_stale}

# The records of the request being served: signals are global, the ContextVar
# keeps concurrent requests (threads or asyncio tasks) apart.
_records: ContextVar[list[Record] | None] = ContextVar("cachesweeper_toolbar", default=None)
_listening = 0
_lock = threading.Lock()


def _receiver(state: str) -> Any:
    def receive(sender: Any, key: str = "", dependencies: Any = (), **kwargs: Any) -> None:
        records = _records.get()
        if records is not None:
            records.append(
                {"state": state, "kind": kind(key), "key": key, "dependencies": list(dependencies)}
            )

    return receive


_RECEIVERS = {state: _receiver(state) for state in _SIGNALS}


def _listen() -> None:
    """Connect the receivers while at least one panel instruments a request."""
    global _listening
    with _lock:
        _listening += 1
        if _listening == 1:
            for state, signal in _SIGNALS.items():
                signal.connect(
                    _RECEIVERS[state], weak=False, dispatch_uid=f"cachesweeper.toolbar.{state}"
                )


def _stop_listening() -> None:
    global _listening
    with _lock:
        _listening = max(0, _listening - 1)
        if _listening == 0:
            for state, signal in _SIGNALS.items():
                signal.disconnect(dispatch_uid=f"cachesweeper.toolbar.{state}")


def kind(key: str) -> str:
    """``fragment`` or ``page``, from an entry key (``<prefix>:f:<hash>`` / ``<prefix>:p:...``)."""
    parts = key.rsplit(":", 2)
    return {"f": "fragment", "p": "page"}.get(parts[-2] if len(parts) == 3 else "", "entry")


class CacheSweeperPanel(Panel):  # type: ignore[misc]
    """The fragments and pages this request served, and the response's cache headers."""

    title = "cachesweeper"
    template = "cachesweeper/debug_toolbar_panel.html"
    is_async = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._collected: list[Record] = []
        self._token: Token[list[Record] | None] | None = None

    @property
    def nav_subtitle(self) -> str:
        counts = self.get_stats().get("counts", {})
        return (
            f"{counts.get(HIT, 0)} hits, {counts.get(MISS, 0)} misses, "
            f"{counts.get(STALE, 0)} stale"
        )

    def enable_instrumentation(self) -> None:
        if self._token is not None:
            return
        self._collected = []
        self._token = _records.set(self._collected)
        _listen()

    def disable_instrumentation(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        _stop_listening()
        try:
            _records.reset(token)
        except ValueError:  # disabled from another context than it was enabled in
            _records.set(None)

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        records = self._collected
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
        self.record_stats(
            {
                "records": records,
                "counts": counts,
                "total": len(records),
                "dependencies": dependencies,
                "response_headers": headers,
                "edges": [edge.label for edge in edges],
                "predicted_edge_headers": predicted,
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
