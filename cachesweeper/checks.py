"""System checks: misconfiguration is reported by ``manage.py check``, with the fix."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from cachesweeper.conf import DEFAULTS
from cachesweeper.rules import compile_rules


def _per_process(backend: str) -> bool:
    """A backend (or a subclass of one) that each process or machine keeps to itself."""
    from django.core.cache.backends.db import DatabaseCache
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache
    from django.utils.module_loading import import_string

    try:
        backend_class = import_string(backend)
    except ImportError:
        return False
    return isinstance(backend_class, type) and issubclass(
        backend_class, (LocMemCache, FileBasedCache, DatabaseCache, DummyCache)
    )


@register(Tags.caches)
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    user = getattr(settings, "CACHESWEEPER", {})
    if not isinstance(user, dict):
        return [
            Error(
                "CACHESWEEPER must be a dict.",
                hint='Set CACHESWEEPER = {"CACHE": "default", ...} or remove it.',
                id="cachesweeper.E002",
            )
        ]
    errors: list[CheckMessage] = []
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        errors.append(
            Error(
                f"CACHESWEEPER has unknown keys: {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}.",
                id="cachesweeper.E002",
            )
        )
    for key in ("CACHE", "VERSION_CACHE", "KEY_PREFIX", "USING"):
        if key in user and (not isinstance(user[key], str) or not user[key]):
            errors.append(
                Error(
                    f'CACHESWEEPER["{key}"] must be a non-empty string, not {user[key]!r}.',
                    id="cachesweeper.E002",
                )
            )
    grace = user.get("GRACE", 0)
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
        errors.append(
            Error(
                f'CACHESWEEPER["GRACE"] must be a whole number of seconds >= 0, not {grace!r}.',
                id="cachesweeper.E002",
            )
        )
    try:
        compile_rules(user.get("PAGE_RULES", []))
    except (TypeError, ValueError) as error:
        errors.append(
            Error(
                f'CACHESWEEPER["PAGE_RULES"] is invalid: {error}.',
                hint='Use [("/prefix", ttl, grace), (re.compile(...), ttl, grace, tags), ...].',
                id="cachesweeper.E003",
            )
        )
    wait = user.get("COLD_WAIT", 0)
    statuses = user.get("CACHEABLE_STATUSES", (200,))
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or wait < 0:
        errors.append(
            Error(
                f'CACHESWEEPER["COLD_WAIT"] must be seconds >= 0, not {wait!r}.',
                id="cachesweeper.E002",
            )
        )
    if not isinstance(statuses, (list, tuple, set, frozenset)) or not all(
        isinstance(code, int) and 100 <= code <= 599 for code in statuses
    ):
        errors.append(
            Error(
                f'CACHESWEEPER["CACHEABLE_STATUSES"] must be a list of HTTP status codes, '
                f"not {statuses!r}.",
                id="cachesweeper.E002",
            )
        )
    if errors:
        return errors
    return _check_caches(user)


def _check_caches(user: dict[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for key in ("CACHE", "VERSION_CACHE"):
        alias = user.get(key, DEFAULTS[key])
        if alias not in settings.CACHES:
            messages.append(
                Error(
                    f'CACHESWEEPER["{key}"] names the cache alias {alias!r}, '
                    "which is not in CACHES.",
                    hint=f"Use one of: {', '.join(settings.CACHES)}; or add {alias!r} to CACHES.",
                    id="cachesweeper.E001",
                )
            )
            continue
        backend = str(settings.CACHES[alias].get("BACKEND", ""))
        if not settings.DEBUG and _per_process(backend):
            messages.append(
                Warning(
                    f'CACHESWEEPER["{key}"] uses {backend}, which each process keeps to '
                    "itself: with several worker processes, a sweep in one process is "
                    "not seen by the others, which keep serving stale content.",
                    hint="Use memcached or Redis (PyMemcacheCache, RedisCache or "
                    "django-redis), or serve the site from a single process.",
                    id="cachesweeper.W001",
                )
            )
    return messages


_EDGE = "cachesweeper.middleware.EdgeMiddleware"
_PAGES = "cachesweeper.middleware.PageCacheMiddleware"
_NEEDED_BEFORE_PAGES = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
)


@register(Tags.caches)
def check_edges(**kwargs: Any) -> list[CheckMessage]:
    from django.core.exceptions import ImproperlyConfigured

    from cachesweeper.edges.loading import configured

    try:
        edges = configured()
    except (ImproperlyConfigured, TypeError) as error:
        return [
            Error(
                f'CACHESWEEPER["EDGES"] is invalid: {error}',
                hint='Each item is {"BACKEND": "cachesweeper.edges.Varnish", "OPTIONS": {...}}.',
                id="cachesweeper.E004",
            )
        ]
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if edges and _EDGE not in middleware:
        return [
            Warning(
                "CACHESWEEPER has EDGES but EdgeMiddleware is not in MIDDLEWARE: responses "
                "carry no edge headers, and LiteSpeed purges are never sent.",
                hint=f'Add "{_EDGE}" first in MIDDLEWARE.',
                id="cachesweeper.W002",
            )
        ]
    return []


@register(Tags.caches)
def check_middleware_order(**kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    messages: list[CheckMessage] = []
    if _EDGE in middleware and middleware.index(_EDGE) != 0:
        messages.append(
            Warning(
                "EdgeMiddleware is not first in MIDDLEWARE: what the middleware before it "
                "renders or changes is not labelled for the edges.",
                hint=f'Move "{_EDGE}" to the top of MIDDLEWARE.',
                id="cachesweeper.W003",
            )
        )
    if _PAGES in middleware:
        position = middleware.index(_PAGES)
        late = [name for name in _NEEDED_BEFORE_PAGES if name in middleware[position:]]
        if late:
            messages.append(
                Error(
                    f"PageCacheMiddleware comes before {', '.join(late)}: it cannot tell "
                    "logged-in users apart and could serve them shared pages.",
                    hint=f'Put "{_PAGES}" last in MIDDLEWARE.',
                    id="cachesweeper.E005",
                )
            )
    return messages
