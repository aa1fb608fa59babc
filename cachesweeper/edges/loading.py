"""Edge backends built from ``CACHESWEEPER["EDGES"]``, and sweeps handed to them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from cachesweeper.conf import conf
from cachesweeper.edges import queue
from cachesweeper.edges.base import Edge, PurgeBatch

_built: tuple[str, list[Edge]] | None = None

#: The public host of the request being served, for URL purges made during it.
request_host: ContextVar[str | None] = ContextVar("cachesweeper_request_host", default=None)


def configured() -> list[Edge]:
    """The configured edges; rebuilt only when the setting changes."""
    global _built
    raw = conf.EDGES
    key = repr(raw)
    if _built is None or _built[0] != key:
        _built = (key, [build(item) for item in raw])
    return _built[1]


def build(item: Any) -> Edge:
    """The edge one ``EDGES`` item describes; ``ImproperlyConfigured`` says what is wrong."""
    if not isinstance(item, dict) or "BACKEND" not in item:
        raise ImproperlyConfigured(
            f'each CACHESWEEPER["EDGES"] item must be a dict with "BACKEND": {item!r}'
        )
    try:
        backend = import_string(item["BACKEND"])
    except ImportError as error:
        raise ImproperlyConfigured(f"unknown edge BACKEND {item['BACKEND']!r}: {error}") from None
    if not (isinstance(backend, type) and issubclass(backend, Edge)):
        raise ImproperlyConfigured(f"edge BACKEND {item['BACKEND']!r} is not an Edge class")
    options = item.get("OPTIONS", {})
    if not isinstance(options, dict):
        raise ImproperlyConfigured(f"OPTIONS of {item['BACKEND']!r} must be a dict")
    return backend(**options)


def dispatch(
    names: Iterable[str],
    urls: Iterable[str] = (),
    everything: bool = False,
    done: Callable[[], None] | None = None,
) -> None:
    """Hand a sweep to every edge: request-bound ones now, the others to the worker.

    ``done`` is called once the worker delivered it to every edge (at once
    when no edge needs the worker).
    """
    edges = configured()
    if not edges:
        if done is not None:
            done()
        return
    names, urls, host = list(names), list(urls), request_host.get()
    for edge in edges:
        if edge.request_bound:
            edge.purge(PurgeBatch(names, urls, everything, host))
    queued = [edge for edge in edges if not edge.request_bound]
    if queued:
        queue.purges.put(queued, names, urls, host, everything, done=done)
    elif done is not None:
        done()
