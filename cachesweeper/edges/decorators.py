"""``edge_cache`` for any edge, and lscache-django's ``lscache`` / ``lscache_purge``."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control

from cachesweeper.dependencies import name_of
from cachesweeper.edges.base import RESPONSE_ATTRIBUTE, CachePolicy, fit
from cachesweeper.edges.litespeed import CONTROL_HEADER, TAG_HEADER, cache_control, purge_value
from cachesweeper.safety import aload_user, refusal

View = Callable[..., Any]


def edge_cache(
    max_age: int, cacheability: str = "public", tags: Iterable[Any] = ()
) -> Callable[[View], View]:
    """Let every configured edge cache a view's responses for ``max_age`` seconds.

    ``EdgeMiddleware`` writes each edge's headers, tagged with the view's
    dependencies plus ``tags``; responses that must not be shared get no-cache.
    ``Cache-Control`` gets ``s-maxage`` (shared caches) and leaves browsers alone.
    """
    if cacheability not in ("public", "private", "no-cache"):
        raise ValueError(
            f'cacheability must be "public", "private" or "no-cache", not {cacheability!r}'
        )
    policy = CachePolicy(max_age, cacheability)
    names = [name_of(tag) for tag in tags]

    def mark(response: HttpResponseBase, args: tuple[Any, ...]) -> HttpResponseBase:
        setattr(response, RESPONSE_ATTRIBUTE, (policy, names))
        request = next((arg for arg in args if isinstance(arg, HttpRequest)), None)
        personal = request is None or refusal(request, response, storing=False) is not None
        if policy.max_age > 0 and cacheability == "public" and not personal:
            patch_cache_control(response, s_maxage=max_age)
        else:
            # Logged in, credentials, cookies, a session...: no shared cache may keep it.
            patch_cache_control(response, private=True)
        return response

    def decorator(view: View) -> View:
        if asyncio.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                response = await view(*args, **kwargs)
                await aload_user(next((a for a in args if isinstance(a, HttpRequest)), None))
                return mark(response, args)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return mark(view(*args, **kwargs), args)

        return wrapper

    return decorator


def lscache(
    max_age: int = 0, cacheability: str = "public", tags: Iterable[Any] = ()
) -> Callable[[View], View]:
    """lscache-django's decorator: LiteSpeed headers on the response, as that library set them.

    Works without ``EdgeMiddleware``; with it, the view's dependencies are added.
    """
    tags = list(tags)
    inner = edge_cache(max_age, cacheability, tags)
    names = [name_of(tag) for tag in tags]

    def decorator(view: View) -> View:
        cached = inner(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            response = cached(*args, **kwargs)
            policy = CachePolicy(max_age, cacheability)
            response[CONTROL_HEADER] = cache_control(policy)
            if names and policy.max_age > 0:
                response[TAG_HEADER] = fit(names, ",", 8192) or ""
            return response

        return wrapper

    return decorator


def lscache_purge(
    tags: Iterable[Any] | None = None, uris: Iterable[str] | None = None, stale: bool = True
) -> str:
    """The ``X-LiteSpeed-Purge`` value for ``tags`` and ``uris``; everything when neither."""
    if tags is None and uris is None:
        return purge_value(everything=True, stale=stale)
    names = [name_of(tag) for tag in tags or ()]
    return purge_value(names, uris or (), stale=stale)
