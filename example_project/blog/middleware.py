"""Show the mechanism: which cached fragments this request hit, missed or served stale.

cachesweeper sends ``fragment_hit`` / ``fragment_miss`` / ``fragment_stale`` for every
fragment it looks up, and ``swept`` for every sweep, each with ``dependencies=``
(the dependency names). The receivers below append them to a per-request log held in
a ``ContextVar`` (correct under threads and async, like the library's own collector);
the middleware installs a fresh log per request, and the base template's footer
lists it. A request that swept and then redirects (the blog's POST forms) leaves a
message, so the next page says what the write invalidated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse

from cachesweeper import signals


@dataclass
class FragmentEvent:
    status: str  # "hit", "miss" or "stale"
    key: str
    dependencies: list[str]


@dataclass
class RequestLog:
    fragments: list[FragmentEvent] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for event in self.fragments if event.status == status)

    @property
    def hits(self) -> int:
        return self.count("hit")

    @property
    def misses(self) -> int:
        return self.count("miss")

    @property
    def stale(self) -> int:
        return self.count("stale")


_current: ContextVar[RequestLog | None] = ContextVar("blog_cache_log", default=None)


def current_log() -> RequestLog | None:
    """The log of the request being handled, or None outside a request (shell, migrations)."""
    return _current.get()


def _names(dependencies: Iterable[Any] | None) -> list[str]:
    return [str(name) for name in dependencies or ()]


def _record(status: str, key: Any, dependencies: Iterable[Any] | None) -> None:
    log = _current.get()
    if log is not None:
        log.fragments.append(FragmentEvent(status, str(key), _names(dependencies)))


def on_hit(sender: Any, key: Any = "", dependencies: Any = None, **kwargs: Any) -> None:
    _record("hit", key, dependencies)


def on_miss(sender: Any, key: Any = "", dependencies: Any = None, **kwargs: Any) -> None:
    _record("miss", key, dependencies)


def on_stale(sender: Any, key: Any = "", dependencies: Any = None, **kwargs: Any) -> None:
    _record("stale", key, dependencies)


def on_swept(sender: Any, dependencies: Any = None, **kwargs: Any) -> None:
    log = _current.get()
    if log is not None:
        log.swept.extend(name for name in _names(dependencies) if name not in log.swept)


def connect_receivers() -> None:
    """Idempotent (dispatch_uid), so several handlers - e.g. test clients - can call it."""
    signals.fragment_hit.connect(on_hit, dispatch_uid="blog.on_hit")
    signals.fragment_miss.connect(on_miss, dispatch_uid="blog.on_miss")
    signals.fragment_stale.connect(on_stale, dispatch_uid="blog.on_stale")
    signals.swept.connect(on_swept, dispatch_uid="blog.on_swept")


class CacheEventsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        connect_receivers()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        log = RequestLog()
        token = _current.set(log)
        try:
            response = self.get_response(request)
            if log.swept and 300 <= response.status_code < 400:
                messages.info(request, "Your change swept: " + ", ".join(log.swept))
            return response
        finally:
            _current.reset(token)
