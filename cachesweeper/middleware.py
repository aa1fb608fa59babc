"""Middleware: the site-wide page cache, and the edge middleware.

``PageCacheMiddleware`` goes last in ``MIDDLEWARE`` (after the session and
authentication middleware); ``EdgeMiddleware`` goes first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control

from cachesweeper import collector, esi, loads, safety
from cachesweeper.conf import conf
from cachesweeper.edges.base import RESPONSE_ATTRIBUTE, CachePolicy, TooManyNames
from cachesweeper.edges.loading import configured, request_host
from cachesweeper.pages import PagePolicy, aserve_page, serve_page, shareable
from cachesweeper.rules import compile_rules, match

#: Internal header carrying a page's dependencies and tokens to the WSGI page cache.
DEPS_HEADER = "X-Cachesweeper-Deps"
#: WSGI environ key the WSGI page cache sets when it wants ``DEPS_HEADER``.
WSGI_FLAG = "cachesweeper.wsgi"

GetResponse = Callable[[HttpRequest], Any]

#: The methods whose responses an edge may keep: only theirs need what was read.
_CACHEABLE = frozenset({"GET", "HEAD"})


class _Middleware:
    """Both sync and async capable, like Django's own middleware."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        raise NotImplementedError


class PageCacheMiddleware(_Middleware):
    """Cache whole pages by URL rule: ``CACHESWEEPER["PAGE_RULES"]``.

    A hit is answered before URL resolution and without running any view.
    """

    def __call__(self, request: HttpRequest) -> Any:
        policy = self._policy(request)
        if self.is_async:
            return self._acall(request, policy)
        if policy is None:
            return self.get_response(request)
        return serve_page(policy, request, self.get_response)

    async def _acall(self, request: HttpRequest, policy: PagePolicy | None) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        if policy is None:
            return await get_response(request)
        return await aserve_page(policy, request, get_response)

    @staticmethod
    def _policy(request: HttpRequest) -> PagePolicy | None:
        rule = match(compile_rules(conf.PAGE_RULES), request.path)
        if rule is None:
            return None
        return PagePolicy(rule.ttl, tags=rule.tags, grace=rule.grace)


class EdgeMiddleware(_Middleware):
    """Tag responses for the caches in front of Django, and deliver LiteSpeed purges.

    Goes first in ``MIDDLEWARE``. Every configured edge adds its tag header
    (the dependencies of everything the response rendered and of what its
    queries read, see :mod:`cachesweeper.loads`, plus explicit ``edge_cache``
    tags) to responses a shared cache may keep; responses that
    must not be shared get no public edge headers. It also reports a page's
    dependencies to the WSGI page cache (``DEPS_HEADER``, stripped there).
    """

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        host = request_host.set(_host(request))
        try:
            with (
                collector.collect(wants_tokens=_wsgi(request)) as frame,
                loads.tracking(on=request.method in _CACHEABLE) as read,
            ):
                response = self.get_response(request)
            loads.report(read, frame)
            return _annotate(request, response, frame)
        finally:
            request_host.reset(host)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        host = request_host.set(_host(request))
        try:
            with (
                collector.collect(wants_tokens=_wsgi(request)) as frame,
                loads.tracking(on=request.method in _CACHEABLE) as read,
            ):
                response = await self.get_response(request)
            await safety.aload_user(request)
            loads.report(read, frame)
            return _annotate(request, response, frame)
        finally:
            request_host.reset(host)


def _wsgi(request: HttpRequest) -> bool:
    return bool(request.META.get(WSGI_FLAG))


def _host(request: HttpRequest) -> str | None:
    try:
        return request.get_host()
    except Exception:  # DisallowedHost: Django answers 400 anyway
        return None


def _annotate(
    request: HttpRequest, response: HttpResponseBase, frame: collector.Frame
) -> HttpResponseBase:
    if frame.filled_holes:
        # A fragment's holes were filled for this visitor (see cachesweeper.holes).
        patch_cache_control(response, private=True)
    if _wsgi(request):
        personal = safety.personal(request, response, outermost=True)
        response[DEPS_HEADER] = "-" if personal else deps_header(frame)
    includes = frame.esi_holes or esi.marked(response)
    for name, value in edge_headers(request, response, frame.names, includes).items():
        response[name] = value
    if includes:
        esi.mark(response)  # after the edges' headers: Fastly's Surrogate-Control
    if safety.is_preview(request):
        # A simulated request (Wagtail's preview) whose response the admin view
        # discards: pending purges wait for a response that reaches the edge.
        return response
    for edge in configured():
        for name, value in edge.purge_headers().items():
            response[name] = value
    return response


def edge_headers(
    request: HttpRequest, response: HttpResponseBase, names: list[str], includes: bool = False
) -> dict[str, str]:
    """Every configured edge's tags and cache control for a response built from ``names``.

    Responses a shared cache must not keep get no tags, and no-cache. So do
    pages with ESI ``includes`` for edges that do not process ESI: assembled,
    such a page holds a visitor's holes.
    """
    edges = configured()
    if not edges:
        return {}
    policy, tags = getattr(response, RESPONSE_ATTRIBUTE, (None, []))
    names = list(dict.fromkeys([*names, *tags]))
    if not shareable(request, response, outermost=True):
        names = []
        if policy is not None:
            policy = CachePolicy(0, "no-cache")
    headers: dict[str, str] = {}
    for edge in edges:
        if not includes or edge.esi:
            try:
                headers.update(edge.response_headers(names, policy))
                continue
            except TooManyNames:
                pass  # untagged content could never be purged: keep it out of the edge
        headers.update(edge.response_headers([], CachePolicy(0, "no-cache")))
    return headers


def deps_header(frame: collector.Frame) -> str:
    """``name=token`` pairs, or ``-`` when the page must not be stored (tokens unknown).

    A page the WSGI layer gets ``name=token`` pairs for was judged shareable
    here: its ``Vary: Cookie``, if any, comes from reading an empty session.
    """
    if not frame.complete:
        return "-"
    return " ".join(f"{name}={token}" for name, token in frame.tokens.items())
