"""Show the mechanism: each page's footer says what cachesweeper did for this request.

Demo machinery, not something a project using cachesweeper needs. The footer lists:

- every cached fragment and page this request looked up - hit, miss or served stale
  (grace) - with its dependency names: cachesweeper sends ``fragment_hit`` /
  ``fragment_miss`` / ``fragment_stale``, ``page_hit`` / ``page_miss`` / ``page_stale``
  and ``swept``, and the receivers below log them for the current request;
- the cache round trips the request made, counted by the backends in ``blog/cache.py``;
- the edge headers the response carries (``X-LiteSpeed-Tag``, ...).

Those headers are added by ``EdgeMiddleware``, the outermost middleware, after the
page has rendered. So the footer is not rendered by the page: the page leaves a
placeholder, and :class:`ShowMechanism` - a request *handler* mixin, i.e. outside every
middleware - fills it in once the response is complete. ``example_project/wsgi.py``
serves the site with it (``runserver`` uses that too); the example's test uses it around
Django's test client. Because the footer is written per response, a page served from
the page cache gets a fresh footer too: the cached bytes hold only the placeholder.

A write that redirects (the blog's POST forms, the admin) leaves a message, so the next
page says what the write swept and which purge its redirect carried to the edge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.template.loader import render_to_string

from cachesweeper import signals

from .cache import count_round_trips

#: Where base.html leaves room for the footer (the text between is a fallback).
FOOTER_START = b"<!-- cachesweeper footer -->"
FOOTER_END = b"<!-- /cachesweeper footer -->"

#: What LiteSpeed (the example's configured edge) reads, then what the page cache sets.
EDGE_HEADERS = ("X-LiteSpeed-Tag", "X-LiteSpeed-Cache-Control", "X-LiteSpeed-Purge")
HTTP_HEADERS = ("Cache-Control", "Age", "ETag")


@dataclass
class Lookup:
    status: str  # "hit", "miss" or "stale"
    key: str
    dependencies: list[str]

    @property
    def kind(self) -> str:
        """cachesweeper's entry keys are ``<prefix>:f:<hash>`` (fragments) or ``:p:`` (pages)."""
        return "page" if ":p:" in self.key else "fragment"


@dataclass
class RequestLog:
    lookups: list[Lookup] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    round_trips: Counter[str] = field(default_factory=Counter)

    def of_kind(self, kind: str) -> list[Lookup]:
        return [lookup for lookup in self.lookups if lookup.kind == kind]


_current: ContextVar[RequestLog | None] = ContextVar("blog_request_log", default=None)


def _names(dependencies: Iterable[Any] | None) -> list[str]:
    return [str(name) for name in dependencies or ()]


def _receiver(status: str) -> Any:
    def receive(sender: Any, key: Any = "", dependencies: Any = None, **kwargs: Any) -> None:
        log = _current.get()
        if log is not None:
            log.lookups.append(Lookup(status, str(key), _names(dependencies)))

    return receive


on_hit, on_miss, on_stale = _receiver("hit"), _receiver("miss"), _receiver("stale")


def on_swept(sender: Any, dependencies: Any = None, **kwargs: Any) -> None:
    log = _current.get()
    if log is not None:
        log.swept.extend(name for name in _names(dependencies) if name not in log.swept)


def connect_receivers() -> None:
    """Idempotent (dispatch_uid), so every handler - e.g. each test client - may call it."""
    signals.fragment_hit.connect(on_hit, dispatch_uid="blog.on_hit")
    signals.fragment_miss.connect(on_miss, dispatch_uid="blog.on_miss")
    signals.fragment_stale.connect(on_stale, dispatch_uid="blog.on_stale")
    signals.page_hit.connect(on_hit, dispatch_uid="blog.on_page_hit")
    signals.page_miss.connect(on_miss, dispatch_uid="blog.on_page_miss")
    signals.page_stale.connect(on_stale, dispatch_uid="blog.on_page_stale")
    signals.swept.connect(on_swept, dispatch_uid="blog.on_swept")


class ShowMechanism:
    """Mixin for a Django request handler: log the request, then fill in the footer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connect_receivers()

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        # The footer makes every body different, so never answer 304 from a cached
        # page's ETag: the browser would show the footer of an earlier request.
        request.META.pop("HTTP_IF_NONE_MATCH", None)
        log = RequestLog()
        token = _current.set(log)
        try:
            with count_round_trips() as tally:
                response: HttpResponseBase = super().get_response(request)  # type: ignore[misc]
        finally:
            _current.reset(token)
        log.round_trips = tally
        if log.swept and response.status_code in (301, 302, 303, 307, 308):
            _tell_the_next_page(request, response, log)
        _fill_in_footer(request, response, log)
        return response


class ShowMechanismWSGIHandler(ShowMechanism, WSGIHandler):
    """What ``example_project/wsgi.py`` serves."""


def _trips(tally: Counter[str]) -> str:
    total = sum(tally.values())
    calls = ", ".join(f"{name} \u00d7{count}" for name, count in tally.most_common())
    text = f"{total} cache round trip{'' if total == 1 else 's'}"
    return f"{text} ({calls})" if calls else text


def _tell_the_next_page(request: HttpRequest, response: HttpResponseBase, log: RequestLog) -> None:
    """Leave a message for the page the redirect leads to.

    MessageMiddleware has already stored this request's messages on the response,
    so store them again, exactly as it does (``update(response)``).
    """
    storage = getattr(request, "_messages", None)
    if storage is None:
        return
    text = f"Your change swept {', '.join(log.swept)}: {_trips(log.round_trips)} in all."
    purge = response.get("X-LiteSpeed-Purge")
    if purge:
        text += f" The redirect carried X-LiteSpeed-Purge: {purge}"
    messages.info(request, text)
    storage.update(response)


def _fill_in_footer(request: HttpRequest, response: HttpResponseBase, log: RequestLog) -> None:
    if response.streaming or not response.get("Content-Type", "").startswith("text/html"):
        return
    content: bytes = response.content  # type: ignore[attr-defined]
    start = content.find(FOOTER_START)
    end = content.find(FOOTER_END, start)
    if start < 0 or end < 0:
        return
    footer = render_to_string("blog/footer.html", _footer_context(request, response, log))
    content = content[:start] + footer.encode() + content[end + len(FOOTER_END) :]
    response.content = content  # type: ignore[attr-defined]
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(content))


def _footer_context(
    request: HttpRequest, response: HttpResponseBase, log: RequestLog
) -> dict[str, Any]:
    pages, fragments = log.of_kind("page"), log.of_kind("fragment")
    tagged = response.has_header("X-LiteSpeed-Tag")
    return {
        "log": log,
        "pages": pages,
        "fragment_counts": {
            status: sum(1 for f in fragments if f.status == status)
            for status in ("hit", "miss", "stale")
        },
        "round_trips": sum(log.round_trips.values()),
        "round_trips_text": _trips(log.round_trips),
        "edge_headers": [(name, response.get(name)) for name in EDGE_HEADERS],
        "http_headers": [(name, response.get(name)) for name in HTTP_HEADERS],
        "not_shared": None if tagged else _why_not_shared(request, response, log),
    }


def _why_not_shared(request: HttpRequest, response: HttpResponseBase, log: RequestLog) -> str:
    """Why EdgeMiddleware gave this response no tags: the rule cachesweeper applied."""
    reason = getattr(response, "cachesweeper_refusal", None)  # set by cachesweeper
    if reason is not None:
        return str(reason)
    if not log.lookups:
        return "nothing cached was rendered, so there is nothing to tag it with"
    return "see cachesweeper's rules (cachesweeper/safety.py)"
