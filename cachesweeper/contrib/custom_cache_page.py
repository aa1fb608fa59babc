"""django-custom-cache-page's documented API, on cachesweeper's page cache.

Its users change one import line and nothing else::

    from custom_cache_page import cache_page, invalidate_tag, versioned  # before
    from cachesweeper.contrib.custom_cache_page import cache_page, invalidate_tag, versioned

The decorator is :func:`cachesweeper.cache_page` underneath, so pages also
follow cachesweeper's rules: every tag is versioned (a sweep is one counter
bump, whatever the number of pages), tags and the ``prefix`` are part of the
page's identity, and a page is never stored for a logged-in visitor, with a
cookie, or ``private``/``no-store`` (the original cached whatever its
``key_func`` named, so one user's page could be served to another).

Not carried over: the original's pluggable ``backend=`` classes and
surrogate indexes. Edges (Fastly, Cloudflare, Varnish, ...) are configured
once in ``CACHESWEEPER["EDGES"]`` and receive the same tag names.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_response_headers
from django.utils.functional import SimpleLazyObject, empty

from cachesweeper import pages, sweeps
from cachesweeper.safety import aload_user

__all__ = [
    "Versioned",
    "cache_page",
    "generate_cache_key",
    "generate_query_params_cache_key",
    "hash_key",
    "invalidate_tag",
    "invalidate_tags",
    "surrogate_from_model",
    "surrogate_from_path",
    "surrogate_from_query_params",
    "surrogate_from_user",
    "versioned",
]

KeyFunc = Callable[[HttpRequest], str]
Name = str | Callable[[HttpRequest], str]


@dataclass
class Versioned:
    """A tag the original kept as a version number in the page key.

    Every cachesweeper tag works that way, so this only names the tag.
    ``timeout`` is kept for compatibility and not used: version counters are
    stored without expiry, because a counter that expires and restarts could
    make old pages valid again.
    """

    name: Name
    timeout: int | None = None

    def resolve_name(self, request: HttpRequest) -> str:
        return self.name(request) if callable(self.name) else self.name


def versioned(name: Name, timeout: int | None = None) -> Versioned:
    """Mark a tag (a name, or a callable ``(request) -> name``) as versioned."""
    return Versioned(name, timeout)


def cache_page(
    timeout: pages.Timeout,
    key_func: KeyFunc | None = None,
    *,
    tags: Iterable[Any] | None = None,
    prefix: str | KeyFunc | None = None,
    only_if: Callable[[HttpRequest], bool] | None = None,
    backend: None = None,
    cache_name: str | None = None,
    grace: float | None = None,
    cacheability: str = "public",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a view's pages under ``key_func(request)`` until ``timeout`` or a sweep.

    ``timeout``: seconds, or a callable ``(response) -> seconds``. Tags are
    names, ``versioned(...)`` or callables ``(request)`` returning a name, a
    list of names, or ``None`` for no tag. Responses served or stored by the
    cache get ``Cache-Control: max-age`` and ``Expires``, as with the original.
    ``cache_name`` is the cache alias; ``grace`` and ``cacheability`` are
    cachesweeper's own options.
    """
    if backend is not None:
        raise ImproperlyConfigured(
            "cachesweeper.contrib.custom_cache_page has no backend= option: configure "
            'edge caches once, in CACHESWEEPER["EDGES"] (see cachesweeper.edges)'
        )
    decorate = pages.cache_page(
        timeout,
        key_func=_page_key(key_func, prefix),
        tags=[_tag(tag) for tag in ([tags] if isinstance(tags, str) else tags or ())],
        grace=grace,
        cacheability=cacheability,
        using=cache_name,
    )

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        cached = decorate(view)
        policy = getattr(cached, pages.POLICY_ATTRIBUTE)  # this wrapper caches with it too
        if asyncio.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                await aload_user(request)  # only_if may ask who it is, off the event loop
                if only_if is not None and not only_if(request):
                    return await view(request, *args, **kwargs)
                response = await cached(request, *args, **kwargs)
                return _with_max_age(request, response, timeout)

            return pages.mark_policy(async_wrapper, policy)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if only_if is not None and not only_if(request):
                return view(request, *args, **kwargs)
            return _with_max_age(request, cached(request, *args, **kwargs), timeout)

        return pages.mark_policy(wrapper, policy)

    return decorator


def invalidate_tag(tag: str, backend: None = None) -> int:
    """Sweep one tag; returns 1, the number of tags swept."""
    return invalidate_tags([tag], backend)


def invalidate_tags(tags: Iterable[str], backend: None = None) -> int:
    """Sweep several tags in one go; returns how many different tags were swept."""
    if backend is not None:
        raise ImproperlyConfigured(
            "cachesweeper sweeps every configured cache and edge: pass no backend="
        )
    names = list(dict.fromkeys(tags))
    sweeps.invalidate_tag(*names)
    return len(names)


# -- keys ---------------------------------------------------------------------------


def generate_query_params_cache_key(request: HttpRequest) -> str:
    """A key from the query string alone, parameters sorted by name, every value kept."""
    return pages.canonical_query(request)


def generate_cache_key(request: HttpRequest) -> str:
    """A key from the path and the query string (in canonical order)."""
    return pages.path_and_query_key(request)


def hash_key(key: str) -> str:
    """The MD5 hex digest of ``key``: a short key of fixed length (not a security measure)."""
    return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


# -- surrogate keys (tag names); their spellings are the original's -----------------


def surrogate_from_path(request: HttpRequest) -> str:
    """``/api/products/`` -> ``"path-api-products"``; ``/`` -> ``"path-root"``."""
    return "path-" + (request.path.strip("/").replace("/", "-") or "root")


def surrogate_from_model(model_name: str, pk: str | int | None = None) -> str:
    """``("Product", 3)`` -> ``"model-product-3"``; without a pk, ``"model-product"``."""
    name = f"model-{model_name.lower()}"
    return name if pk is None else f"{name}-{pk}"


def surrogate_from_user(request: HttpRequest) -> str | None:
    """``"user-<pk>"`` for a logged-in user; ``None`` (no tag) for anyone else.

    A visitor without a session cookie is anonymous: the session is not
    loaded to find that out, since a page that touched it counts as personal.
    """
    user = getattr(request, "user", None)
    if user is None or (_lazy(user) and settings.SESSION_COOKIE_NAME not in request.COOKIES):
        return None
    if getattr(user, "is_authenticated", False):
        return f"user-{user.pk}"
    return None


def surrogate_from_query_params(
    request: HttpRequest, params: Sequence[str] | None = None
) -> list[str]:
    """``?cat=shoes`` -> ``["param-cat-shoes"]``; ``params`` picks names; empty values: none."""
    names = list(request.GET) if params is None else params
    return [f"param-{name}-{value}" for name in names if (value := request.GET.get(name))]


# -- helpers --------------------------------------------------------------------------


def _lazy(user: Any) -> bool:
    """``request.user`` as AuthenticationMiddleware leaves it: not loaded yet."""
    return isinstance(user, SimpleLazyObject) and user._wrapped is empty


def _tag(tag: Any) -> Any:
    """A tag of the original as cachesweeper takes it: its callables get the request only."""
    if isinstance(tag, Versioned):
        tag = tag.name
    if callable(tag) and not isinstance(tag, type):
        given = tag
        return lambda request, *args, **kwargs: given(request)
    return tag


def _page_key(key_func: KeyFunc | None, prefix: str | KeyFunc | None) -> KeyFunc | None:
    if prefix is None:
        return key_func
    base = key_func or _url_key

    def key(request: HttpRequest) -> str:
        value = prefix(request) if callable(prefix) else prefix
        return json.dumps([value, base(request)])

    return key


def _url_key(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}{pages.path_and_query_key(request)}"


def _with_max_age(
    request: HttpRequest, response: HttpResponseBase, timeout: pages.Timeout
) -> HttpResponseBase:
    """Give a page the cache may share ``max-age`` and ``Expires``, as the original did."""
    if response.status_code != 200 or not pages.shareable(request, response):
        return response
    seconds = timeout(response) if callable(timeout) else timeout
    if seconds is not None:
        patch_response_headers(response, int(seconds))
    return response
