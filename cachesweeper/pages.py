"""Page caching on the same tokens: ``cache_page`` and the page safety rules.

A page entry is keyed by what identifies the page (scheme, host, path, the
query string in canonical order, the values of the request headers the
response ``Vary``s on, the user for private pages) and depends on its
declared ``tags`` plus everything the collector saw while it rendered.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.utils.http import urlencode

from cachesweeper import collector, esi, filling, holes, loads, safety
from cachesweeper.conf import conf
from cachesweeper.dependencies import Dependency, resolve
from cachesweeper.edges.base import RESPONSE_ATTRIBUTE
from cachesweeper.entries import (
    MISS,
    PAGE,
    Lookup,
    Rendered,
    Slot,
    aserve,
    lookup,
    release,
    serve,
    slot,
)
from cachesweeper.keys import make_key

_POINTER = "vary1"
#: In a page's Vary list: the page read the empty session (or messages) of a visitor
#: without either.
_SESSION = "~session"
_COMMA = re.compile(r"\s*,\s*")
_KNOWN_LIMIT = 10_000
#: Headers that describe one connection or one delivery, not the page: never replayed.
HOP_BY_HOP = frozenset(
    {
        "age",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_STORED = HOP_BY_HOP | {"set-cookie"}

# Page key -> the request headers its response varies on, as last seen.
_vary_known: dict[str, tuple[str, ...]] = {}

Tag = Any
KeyFunc = Callable[[HttpRequest], str]
#: Seconds, ``None`` (no expiry), or a callable deciding from the response it is given.
Timeout = float | None | Callable[[HttpResponseBase], float | None]


class StoredPage(NamedTuple):
    """A page as stored in its entry: bytes and end-to-end headers, faithfully."""

    status: int
    etag: str
    headers: tuple[tuple[str, str], ...]
    content: bytes
    vary: tuple[str, ...]
    stored_at: float
    edge: Any = None  # what ``edge_cache`` asked of the edges, replayed on hits


def versioned(name: str) -> str:
    """Accepted in ``tags=`` for django-custom-cache-page code: every tag here is versioned."""
    return name


# -- key helpers for key_func --------------------------------------------------


def path_key(request: HttpRequest) -> str:
    """Key pages by path only (the query string is ignored)."""
    return request.path


def path_and_query_key(request: HttpRequest) -> str:
    """Key pages by path and canonical query string."""
    return f"{request.path}?{canonical_query(request)}"


def query_key(request: HttpRequest) -> str:
    """Key pages by canonical query string only."""
    return canonical_query(request)


def canonical_query(request: HttpRequest) -> str:
    """The query string with parameters sorted by name, values kept in their order.

    ``?b=1&a=2`` and ``?a=2&b=1`` are one page; ``?a=1&a=2`` and ``?a=2&a=1``
    are not (``getlist`` would differ). Encodings of one value (``%41``,
    ``A``) are one page, as Django decodes them alike; names and values are
    encoded again, so ``?a=1%26b%3D2`` and ``?a=1&b=2`` stay two pages.
    """
    return sorted_query(request.GET.lists())


def sorted_query(lists: Iterable[tuple[str, list[str]]]) -> str:
    """``name=value`` pairs sorted by name, values in their order, each part encoded."""
    return urlencode(
        [
            (name, value)
            for name, values in sorted(lists, key=lambda item: item[0])
            for value in values
        ]
    )


# -- the policy ------------------------------------------------------------------


@dataclass(frozen=True)
class PagePolicy:
    """How one view (or one site-wide rule) caches its pages."""

    timeout: Timeout
    key_func: KeyFunc | None = None
    tags: Sequence[Tag] | Tag = ()
    only_if: Callable[[HttpRequest], bool] | None = None
    grace: float | None = None
    cacheability: str = "public"
    using: str | None = None

    def __post_init__(self) -> None:
        if self.cacheability not in ("public", "private"):
            raise ValueError(
                f'cacheability must be "public" or "private", not {self.cacheability!r}'
            )


POLICY_ATTRIBUTE = "cachesweeper_policy"


def mark_policy(view: Callable[..., Any], policy: PagePolicy) -> Callable[..., Any]:
    """Record on a view wrapper the policy it caches its pages with."""
    setattr(view, POLICY_ATTRIBUTE, policy)
    return view


def cache_page(
    timeout: Timeout,
    *,
    key_func: KeyFunc | None = None,
    tags: Sequence[Tag] | Tag = (),
    only_if: Callable[[HttpRequest], bool] | None = None,
    grace: float | None = None,
    cacheability: str = "public",
    using: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a view's pages until ``timeout`` or until one of their dependencies is swept.

    ``timeout`` may be a callable ``(response) -> seconds``, asked once the
    response is rendered (``0`` then means "do not store this one").
    ``tags``: named tags, instances, models, ``versioned("x")``, or callables
    ``(request, *args, **kwargs)`` returning any of those, or ``None`` for no
    tag (a user tag on an anonymous visit, say). The page also depends
    on every fragment it rendered. Works for sync and async views; decorate a
    class-based view's ``as_view()`` or use ``method_decorator``.

    The returned view carries its policy in the attribute ``cachesweeper_policy``
    (:data:`POLICY_ATTRIBUTE`), which ``functools.wraps`` and ``method_decorator``
    carry outwards, so tools such as ``manage.py cachesweeper inspect --url``
    find it without unwrapping the view.
    """
    policy = PagePolicy(timeout, key_func, tags, only_if, grace, cacheability, using)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                return await aserve_page(policy, request, view, args, kwargs)

            return mark_policy(async_wrapper, policy)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return serve_page(policy, request, view, args, kwargs)

        return mark_policy(wrapper, policy)

    return decorator


# -- serving -----------------------------------------------------------------------


def serve_page(
    policy: PagePolicy,
    request: HttpRequest,
    view: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
) -> HttpResponseBase:
    """Answer ``request`` from the page cache, or run ``view`` and store its response."""
    kwargs = kwargs or {}
    looked_up = _page_lookup(policy, request, args, kwargs)
    if looked_up is None:
        return view(request, *args, **kwargs)  # type: ignore[no-any-return]
    found, base = looked_up

    def render(_: int) -> Rendered:
        with loads.tracking() as loaded:
            return _rendered(policy, request, view(request, *args, **kwargs), found, base, loaded)

    ((state, value),) = serve([found.slot], render, [found])
    try:
        return _response(policy, request, state, value)
    except holes.HoleLost as lost:  # a deploy changed a hole the stored page names
        filling.forget([found.slot], lost)
        return view(request, *args, **kwargs)  # type: ignore[no-any-return]


async def aserve_page(
    policy: PagePolicy,
    request: HttpRequest,
    view: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
) -> HttpResponseBase:
    """:func:`serve_page` for async views."""
    kwargs = kwargs or {}
    await safety.aload_user(request)  # the visitor decides the key: load it off the event loop
    looked_up = _page_lookup(policy, request, args, kwargs)
    if looked_up is None:
        return await view(request, *args, **kwargs)  # type: ignore[no-any-return]
    found, base = looked_up

    async def render(_: int) -> Rendered:
        with loads.tracking() as loaded:
            response = await view(request, *args, **kwargs)
            return _rendered(policy, request, response, found, base, loaded)

    ((state, value),) = await aserve([found.slot], render, [found])
    try:
        return _response(policy, request, state, value)
    except holes.HoleLost as lost:  # a deploy changed a hole the stored page names
        filling.forget([found.slot], lost)
        return await view(request, *args, **kwargs)  # type: ignore[no-any-return]


def _response(
    policy: PagePolicy, request: HttpRequest, state: str, value: Any
) -> HttpResponseBase:
    """The response just rendered (a miss), or the stored page rebuilt; holes filled."""
    served = holes.content(value)
    if state == MISS:
        response: HttpResponseBase = served
        if policy.cacheability == "private":
            patch_cache_control(response, private=True)
    else:
        response = _stored_response(policy, request, served)
    if isinstance(value, holes.Holed):
        way = filling.how(request)
        if way != filling.KEEP:
            _fill(response, value.holes, request, includes=way == filling.INCLUDE)
    return response


def _fill(
    response: HttpResponseBase,
    found: dict[str, holes.Hole],
    request: HttpRequest,
    *,
    includes: bool,
) -> None:
    """Render this visitor's holes into the page, which then is theirs alone.

    For an edge that processes ESI, an include per hole instead: the page
    stays shared (see :mod:`cachesweeper.esi`).
    """
    if request.method != "HEAD" and isinstance(response, HttpResponse):
        charset = response.charset  # parsed from Content-Type on every access: once
        text = response.content.decode(charset)
        render = esi.include if includes else None
        response.content = holes.fill(text, found, request, render).encode(charset)
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
    if includes:
        esi.mark(response)
        return
    if response.has_header("ETag"):
        del response["ETag"]  # every visitor's copy differs
    patch_cache_control(response, private=True)


def _stored_response(policy: PagePolicy, request: HttpRequest, payload: Any) -> HttpResponseBase:
    """Rebuild a stored page; answer ``If-None-Match`` with 304 when it matches."""
    page = StoredPage(*payload)
    response = HttpResponse(page.content, status=page.status)
    del response["Content-Type"]
    for name, value in page.headers:
        response[name] = value
    if not response.has_header("ETag"):
        response["ETag"] = page.etag
    if page.edge is not None:
        setattr(response, RESPONSE_ATTRIBUTE, page.edge)
    if _SESSION in page.vary:
        _replay_session_read(request, response)
    response["Age"] = str(max(0, int(time.time() - page.stored_at)))
    if policy.cacheability == "private":
        patch_cache_control(response, private=True)
    if request.method == "HEAD":
        response.content = b""
        response["Content-Length"] = str(len(page.content))
    conditional = get_conditional_response(request, etag=response["ETag"], response=response)
    return cast(HttpResponseBase, conditional)


# -- what may be cached -------------------------------------------------------------


def _page_lookup(
    policy: PagePolicy, request: HttpRequest, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[Lookup, str] | None:
    """The lookup of this request's page, and the page's plain key.

    ``None`` when the request must not be served from or stored in the cache.
    """
    if request.method not in ("GET", "HEAD") or getattr(request, "do_not_cache", False):
        return None
    if safety.is_preview(request):
        return None
    if policy.only_if is not None and not policy.only_if(request):
        return None
    visitor = safety.visitor(request)
    if visitor is None or (visitor and policy.cacheability == "public"):
        return None
    dependencies = page_dependencies(policy.tags, request, args, kwargs)
    base = page_key(policy, request, dependencies, visitor)
    vary = _vary_known.get(base, ())
    grace = conf.GRACE if policy.grace is None else policy.grace
    # A callable timeout is asked when the response is known (see _rendered).
    timeout = None if callable(policy.timeout) else policy.timeout

    def page_slot(key: str) -> Slot:
        return slot(key, dependencies, timeout, grace, using=policy.using, kind=PAGE)

    (found,) = lookup([page_slot(variant_key(base, request, vary) if vary else base)])
    pointer = vary_pointer(found.raw)
    if pointer is not None:  # this process meets the page's Vary for the first time
        _remember_vary(base, pointer)
        release([found])
        (found,) = lookup([page_slot(variant_key(base, request, pointer))])
    return found, base


def _rendered(
    policy: PagePolicy,
    request: HttpRequest,
    response: HttpResponseBase,
    found: Lookup,
    base: str,
    loaded: loads.Loads,
) -> Rendered:
    """Render a template response inside the page's frame, then judge it.

    The page depends on what its queries read (:mod:`cachesweeper.loads`)
    besides its tags and fragments. A page that ``Vary``s is stored under
    its variant's key, with a pointer at the plain key for processes that do
    not know its ``Vary`` yet.
    """
    if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
        response.render()
    failed = response.status_code >= 500
    if safety.refusal(request, response, private=policy.cacheability == "private"):
        return Rendered(response, None, failed)
    slot = found.slot
    timeout = policy.timeout(response) if callable(policy.timeout) else slot.timeout
    if timeout is not None and timeout <= 0:
        return Rendered(response, None, failed)
    frame = collector.current()
    assert frame is not None  # entries.serve renders inside the page's frame
    loads.report(loaded, frame)
    page = _page(found, request, response, frame)
    key = slot.key
    if page.vary and not failed:
        key = variant_key(base, request, page.vary)
        _remember_vary(base, page.vary)
        _store_pointer(slot._replace(key=base, timeout=timeout), page.vary)
    if not response.has_header("ETag"):
        response["ETag"] = page.etag
    return Rendered(response, tuple(page), failed, key, timeout)


def shareable(
    request: HttpRequest, response: HttpResponseBase, *, outermost: bool = False
) -> bool:
    """Whether a shared cache (a page entry or an edge) may keep this response."""
    return safety.refusal(request, response, storing=False, outermost=outermost) is None


def _page(
    found: Lookup, request: HttpRequest, response: HttpResponseBase, frame: collector.Frame
) -> StoredPage:
    stored_at = time.time()
    headers = tuple(
        (name, value) for name, value in response.items() if name.lower() not in _NOT_STORED
    )
    vary = tuple(
        header
        for header in _COMMA.split(response.get("Vary", "").strip())
        if header and header.lower() != "cookie"
    )
    if safety.read_empty_state(request):
        vary += (_SESSION,)  # served again only to visitors without a session or messages
    tokens = sorted({**found.declared_tokens(), **frame.tokens}.items())
    digest = hashlib.blake2b(repr((found.slot.key, tokens, stored_at)).encode(), digest_size=12)
    content = bytes(response.content)  # type: ignore[attr-defined]
    etag = f'"cs-{digest.hexdigest()}"'
    edge = getattr(response, RESPONSE_ATTRIBUTE, None)
    return StoredPage(response.status_code, etag, headers, content, vary, stored_at, edge)


# -- keys ------------------------------------------------------------------------------


def page_key(
    policy: PagePolicy, request: HttpRequest, dependencies: Sequence[Dependency], visitor: str
) -> str:
    """The plain key of a page, before any ``Vary``: its URL (or ``key_func``), who it
    is for (``""`` for anonymous visitors) and its declared dependencies."""
    identity = [policy.key_func(request) if policy.key_func else page_url(request)]
    identity += [visitor, *(f"{dep.name} {dep.scope}" for dep in dependencies)]
    return make_key(conf.KEY_PREFIX, "p", identity)


def page_url(request: HttpRequest) -> str:
    """The default page identity: scheme, host, path and the canonical query."""
    scheme = request.scheme or "http"
    return url_identity(scheme, request.get_host(), request.path, request.GET.lists())


def url_identity(scheme: str, host: str, path: str, query: Iterable[tuple[str, list[str]]]) -> str:
    """A URL as it keys pages, for ``cache_page`` and the WSGI page cache alike.

    The host is kept as sent: a view may show it, so ``Example.com`` and
    ``example.com`` are two pages (an entry more, never a wrong page). The
    query is in canonical order (see :func:`canonical_query`).
    """
    return f"{scheme}://{host}{path}?{sorted_query(query) if query else ''}"


def variant_key(base: str, request: HttpRequest, vary: Iterable[str]) -> str:
    """The key of this request's variant of a page that ``Vary``s on ``vary``."""
    values = [base]
    for header in vary:
        if header == _SESSION:
            values += [_SESSION, "1" if safety.has_visitor_state(request) else ""]
            continue
        meta = header.upper().replace("-", "_")
        if meta not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            meta = f"HTTP_{meta}"
        values += [header.lower(), request.META.get(meta, "")]
    return make_key(conf.KEY_PREFIX, "p", values)


def _replay_session_read(request: HttpRequest, response: HttpResponseBase) -> None:
    """The page was made reading the (empty) session: its copies say so too.

    Then ``SessionMiddleware`` adds ``Vary: Cookie`` to a hit as it did to the
    render, for browsers and shared caches that honour it.
    """
    session = getattr(request, "session", None)
    if session is not None:
        session.accessed = True
    else:
        patch_vary_headers(response, ["Cookie"])


def _remember_vary(base: str, vary: tuple[str, ...]) -> None:
    if len(_vary_known) >= _KNOWN_LIMIT:
        _vary_known.clear()
    _vary_known[base] = vary


def vary_pointer(raw: Any) -> tuple[str, ...] | None:
    """The ``Vary`` headers when ``raw`` (read at a page's plain key) is a pointer."""
    if isinstance(raw, tuple) and len(raw) == 2 and raw[0] == _POINTER:
        return tuple(raw[1])
    return None


def _store_pointer(pointer: Slot, vary: tuple[str, ...]) -> None:
    """Leave the page's ``Vary`` at its plain key: a hint, for as long as its entries live."""
    timeout = None if pointer.timeout is None else pointer.timeout + pointer.grace
    try:
        pointer.cache.set(pointer.key, (_POINTER, vary), timeout)
    except Exception:
        pass  # only a hint; the next request learns the Vary again


def page_dependencies(
    tags: Sequence[Tag] | Tag, request: HttpRequest, args: Sequence[Any], kwargs: dict[str, Any]
) -> list[Dependency]:
    """The dependencies a policy's ``tags`` declare for this request (callables asked)."""
    if isinstance(tags, (str, type, Model, QuerySet)) or not isinstance(tags, Iterable):
        tags = [tags]
    dependencies: list[Dependency] = []
    for tag in tags:
        if callable(tag) and not isinstance(tag, type):
            tag = tag(request, *args, **kwargs)
            if isinstance(tag, (list, tuple)):
                tag = [item for item in tag if item is not None]
            elif tag is None:
                continue  # the callable says "no tag" for this request
        dependencies += resolve(tag)
    return dependencies


__all__ = ["cache_page", "path_and_query_key", "path_key", "query_key", "versioned"]
