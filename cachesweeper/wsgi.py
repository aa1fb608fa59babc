"""A framework-agnostic WSGI page cache (pagecache compatible).

    from cachesweeper.wsgi import PageCacheMiddleware
    application = PageCacheMiddleware(application, [("/blog", 300, 30)], memcache_client)

It sits outside the application, so a hit never enters it at all. ``cache``
is a memcache-style client (``get``/``set``/``add``/``delete``, ``get_many``
when it has one), a Django cache, or a Django cache alias. Around a Django
app with :class:`cachesweeper.middleware.EdgeMiddleware`, Django reports each
page's dependencies and their tokens in an internal header that this layer
reads and strips, so Django-side sweeps reach pages stored here too, whatever
``cache`` is.

Each process keeps copies of the pages it has read that depend on
something, up to ``local_copies`` bytes (8 MiB by default; ``0`` keeps
none). A hit on a copy reads only the page's tokens from the version cache:
**one** round trip of a few bytes, whatever ``cache`` is, and the page does
not cross the network. A sweep reaches the copies of every process, since it
moves the tokens they are checked against; deleting pages from ``cache`` does
not (see :mod:`cachesweeper.copies`).

Without a copy (a process's first hit on a page, a page that changed since
its copy, no dependencies, or ``local_copies=0``), a hit costs **one** round
trip when ``cache`` is the alias (the string) of
``CACHESWEEPER["VERSION_CACHE"]``, because then the page and its tokens are
read in one ``get_many``; given a client, a Django cache object or another
alias, **two**: the page from ``cache``, then its tokens from the version
cache. Pages with no dependencies (a plain WSGI app) cost one either way. A
hit right after a copy turned out of date costs one more, the token read
that found it out.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from http.cookies import SimpleCookie
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from django.core.cache.backends.base import BaseCache

from cachesweeper import collector
from cachesweeper.conf import conf
from cachesweeper.copies import Copies
from cachesweeper.entries import (
    HIT,
    MISS,
    PAGE,
    Lookup,
    Rendered,
    Slot,
    lookup,
    read,
    serve,
)
from cachesweeper.keys import make_key
from cachesweeper.middleware import DEPS_HEADER, WSGI_FLAG
from cachesweeper.pages import HOP_BY_HOP, url_identity
from cachesweeper.rules import PageRule, compile_rules, match

StartResponse = Callable[..., Any]
Header = tuple[str, str]


class WSGIPage(NamedTuple):
    """What an application answered, stored as it was and replayed byte for byte.

    Not :class:`cachesweeper.pages.StoredPage`: that one is rebuilt as a Django
    response (ETag, ``Vary`` variants, edge labels); here there is only WSGI.
    """

    status: str  # the status line, reason phrase included
    headers: tuple[Header, ...]
    body: bytes
    stored_at: float


WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_PRIVATE = ("private", "no-store", "no-cache")
_NO_MARK = contextlib.nullcontext()
_DEPS = DEPS_HEADER.lower()


class PageCacheMiddleware:
    """Serve whole pages by URL rule from a cache, in front of any WSGI application."""

    def __init__(
        self,
        app: WSGIApp,
        cached_urls: Iterable[Sequence[Any]],
        cache: Any,
        *,
        statuses: Iterable[int] = (200,),
        session_cookies: Iterable[str] = ("sessionid", "messages"),
        local_copies: int = 8 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.copies = Copies(local_copies) if local_copies > 0 else None
        self.rules = compile_rules(cached_urls)
        self.cache = cache
        self._alias: str | None = cache if isinstance(cache, str) else None
        self.statuses = frozenset(statuses)
        self.session_cookies = frozenset(session_cookies)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rule = match(self.rules, environ.get("PATH_INFO", ""))
        if rule is None or not self._shared(environ):
            return self.app(environ, start_response)
        return self._serve(environ, start_response, rule)

    def _serve(
        self, environ: dict[str, Any], start_response: StartResponse, rule: PageRule
    ) -> Iterable[bytes]:
        started = time.time()
        key = _page_key(conf.KEY_PREFIX, _url(environ))
        # Positional, with no dependencies to split: this runs on every hit.
        store = None if self._alias is not None else _store(self.cache)
        page = Slot(key, (), rule.ttl, rule.grace, self._alias, store, None, PAGE, False, (), {})
        found = self._lookup(page)
        # Rendering and storing judge data by when the request began; a hit needs no mark.
        mark = _NO_MARK if found.state == HIT else collector.request(started)
        with mark:
            ((state, value),) = serve([page], lambda _: self._render(environ), [found])
        if state != MISS:
            return _replay(environ, start_response, value)
        page_answered: WSGIPage = value
        start_response(page_answered.status, list(page_answered.headers))
        # The app ran as GET (so its headers are a GET's): a HEAD gets them, not the body.
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [page_answered.body]

    def _lookup(self, page: Slot) -> Lookup:
        """Look the page up, trying this process's copy first; keep a copy of what was read."""
        copies = self.copies
        if copies is None:
            (found,) = lookup([page])
            return found
        copy = copies.get(page.key)
        found = Lookup(page, copy)
        read([found])
        if copy is not None and found.copy is None:
            copies.drop(page.key)  # out of date
        entry = found.entry
        if found.state == HIT and entry is not None and entry is not copy:
            copies.keep(page.key, entry, _size(entry.payload))
        return found

    def _render(self, environ: dict[str, Any]) -> Rendered:
        """Run the application for a missing (or stale) page, and judge what it answered."""
        # Holes cannot be filled out here: the application renders them in place,
        # and a page that has one is not stored (see cachesweeper.holes).
        with collector.collect(keeps_holes=False):
            page, reported = self._run(environ)
        storable = environ["REQUEST_METHOD"] == "GET" and self._storable(page, reported)
        # Stored as a plain tuple: entries hold no class of ours.
        return Rendered(page, tuple(page) if storable else None, int(page.status[:3]) >= 500)

    def _shared(self, environ: dict[str, Any]) -> bool:
        """GET or HEAD, from a visitor without a session or credentials."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return False
        if "HTTP_AUTHORIZATION" in environ:
            return False
        if not environ.get("HTTP_COOKIE"):
            return True
        cookies = SimpleCookie()
        try:
            cookies.load(environ["HTTP_COOKIE"])
        except Exception:
            return False
        return not self.session_cookies & set(cookies)

    def _run(self, environ: dict[str, Any]) -> tuple[WSGIPage, bool]:
        """Call the application, collect its response, and strip the dependency header.

        Also says whether the response carried that header.
        """
        captured: dict[str, Any] = {}
        written: list[bytes] = []

        def start_response(status: str, headers: list[Header], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return written.append

        environ = {**environ, WSGI_FLAG: True, "REQUEST_METHOD": "GET"}
        result = self.app(environ, start_response)
        try:
            body = b"".join([*written, *result])
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        headers, reported = [], False
        for name, value in captured["headers"]:
            lower = name.lower()
            if lower == _DEPS:
                _report(value)
                reported = True
            elif lower not in HOP_BY_HOP:  # dropped once, here, not on every replay
                headers.append((name, value))
        return WSGIPage(captured["status"], tuple(headers), body, time.time()), reported

    def _storable(self, page: WSGIPage, reported: bool) -> bool:
        """``reported``: Django's ``EdgeMiddleware`` judged the page and told its dependencies.

        (A page whose dependencies' tokens are not all known is not stored
        either: ``entries.save`` checks that for every entry.)
        """
        status, headers, _, _ = page
        if int(status[:3]) not in self.statuses:
            return False
        for name, value in headers:
            lower = name.lower()
            if lower == "set-cookie":
                return False
            if lower == "cache-control" and any(word in value.lower() for word in _PRIVATE):
                return False
            if lower == "vary" and value.strip() and not (reported and _cookie_only(value)):
                return False  # variants are not stored here; cache_page handles Vary
        return True


def _cookie_only(vary: str) -> bool:
    """``Vary: Cookie`` alone: on a page Django reported, an empty session was read.

    Visitors with a session cookie never get pages from here, and every
    visitor without one got the same page.
    """
    return {part.strip().lower() for part in vary.split(",") if part.strip()} == {"cookie"}


def _report(header: str) -> None:
    """Feed the dependencies Django reported into the page's frame."""
    if header.strip() == "-":
        collector.spoil()  # Django could not tell the tokens: do not store the page
        return
    tokens: dict[str, int | None] = {}
    for pair in header.split():
        name, _, token = pair.partition("=")
        tokens[name] = int(token) if token.isdigit() else None
    collector.report(tokens)


def _replay(
    environ: dict[str, Any], start_response: StartResponse, page: tuple[Any, ...]
) -> Iterable[bytes]:
    """Answer with a stored page (a :class:`WSGIPage` as a tuple) and its age."""
    status, headers, body, stored_at = page
    start_response(status, [*headers, ("Age", str(max(0, int(time.time() - stored_at))))])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _size(page: tuple[Any, ...]) -> int:
    """About the memory a stored page (a :class:`WSGIPage` as a tuple) takes: its body,
    its headers and some overhead."""
    status, headers, body, _ = page
    return (
        len(body) + len(status) + sum(len(name) + len(value) + 64 for name, value in headers) + 256
    )


def _url(environ: dict[str, Any]) -> str:
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    lists: dict[str, list[str]] = {}
    query = environ.get("QUERY_STRING")
    if query:  # most hits have none: no parsing then
        for name, value in parse_qsl(query, keep_blank_values=True):
            lists.setdefault(name, []).append(value)
    scheme = environ.get("wsgi.url_scheme", "http")
    return url_identity(scheme, host, environ.get("PATH_INFO", ""), lists.items())


@functools.lru_cache(maxsize=4096)
def _page_key(prefix: str, url: str) -> str:
    """Hashing the URL is a good part of a hit; the same pages come back often.

    ``prefix`` (``conf.KEY_PREFIX``) keys the memo too, so a changed setting needs no clearing.
    """
    return make_key(prefix, "w", [url])


def _store(cache: Any) -> Any:
    """A Django cache as it is; a memcache-style client behind a small adapter.

    django-valkey's backends are Django caches that do not subclass ``BaseCache``:
    known by their key function. Wrapped, they would pickle twice and take the
    adapter's ``0`` (memcached's "no expiry") for "expire at once".
    """
    if isinstance(cache, BaseCache) or hasattr(cache, "key_func"):
        return cache
    return _ClientStore(cache)


class _ClientStore:
    """The few cache calls the read path makes, on a memcache-style client.

    Values are pickled to bytes, which every such client stores; ``None``
    (no expiry) is memcached's 0.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, key: str) -> Any:
        value = self.client.get(key)
        return None if value is None else pickle.loads(value)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        many = getattr(self.client, "get_many", None) or getattr(self.client, "get_multi", None)
        if many is not None:
            found = many(keys)
        else:
            found = {key: self.client.get(key) for key in keys}
        return {key: pickle.loads(value) for key, value in found.items() if value is not None}

    def set_many(self, values: dict[str, Any], timeout: float | None) -> list[str]:
        for key, value in values.items():
            self.client.set(key, pickle.dumps(value), _expiry(timeout))
        return []

    def set(self, key: str, value: Any, timeout: float | None) -> None:
        self.client.set(key, pickle.dumps(value), _expiry(timeout))

    def add(self, key: str, value: Any, timeout: float | None = None) -> bool:
        data, expiry = pickle.dumps(value), _expiry(timeout)
        try:
            # pymemcache answers True without asking the server unless told to wait.
            return bool(self.client.add(key, data, expiry, noreply=False))
        except TypeError:  # python-memcached and others have no noreply
            return bool(self.client.add(key, data, expiry))

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.client.delete(key)


def _expiry(timeout: float | None) -> int:
    return 0 if timeout is None else max(1, int(timeout))


__all__ = ["PageCacheMiddleware"]
