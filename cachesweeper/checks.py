"""System checks: misconfiguration is reported by ``manage.py check``, with the fix."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from cachesweeper.conf import DEFAULTS
from cachesweeper.rules import compile_rules


def _backend_class(backend: str) -> type | None:
    from django.utils.module_loading import import_string

    try:
        found = import_string(backend)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def _kind(backend: str) -> str | None:
    """Which of Django's unshared or unstoring backends ``backend`` is (or subclasses)."""
    from django.core.cache.backends.db import DatabaseCache
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache

    backend_class = _backend_class(backend)
    if backend_class is None:
        return None
    kinds: tuple[tuple[type, str], ...] = (
        (DummyCache, "dummy"),
        (LocMemCache, "locmem"),
        (FileBasedCache, "file"),
        (DatabaseCache, "database"),
    )
    for base, kind in kinds:
        if issubclass(backend_class, base):
            return kind
    return None


#: W001: why each kind is a poor home for entries and tokens in a deployment.
_W001_WHY = {
    "locmem": "which each process keeps to itself: with several worker processes, a "
    "sweep in one process is not seen by the others, which keep serving stale content.",
    "file": "which lives on one machine's disk: processes on other machines do not see "
    "its sweeps and keep serving stale content.",
    "database": "which every process shares, but each read is a query on the cache table "
    "(the round trip caching is meant to save), it culls arbitrary rows, counters "
    "included, past MAX_ENTRIES (300 by default), and set() drops database errors without "
    "a word, so a sweep that meets a concurrent write to the same key is lost.",
}


@register(Tags.caches)
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """E001/E002/E003/E006, W001/W004: the ``CACHESWEEPER`` dict and the caches it names.

    Types are checked first: cache aliases are only looked at once the settings parse.
    """
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
                    hint=f"Set it to a string such as {DEFAULTS[key]!r} (the default), "
                    "or leave the key out.",
                    id="cachesweeper.E002",
                )
            )
    grace = user.get("GRACE", 0)
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
        errors.append(
            Error(
                f'CACHESWEEPER["GRACE"] must be a whole number of seconds >= 0, not {grace!r}.',
                hint='Use an int such as "GRACE": 30 (0, the default, turns grace off).',
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
                hint='Use a number such as "COLD_WAIT": 2.0 (the default); 0 never waits.',
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
                hint='Use a list of ints from 100 to 599, e.g. "CACHEABLE_STATUSES": [200, 301, '
                "404] (the default is [200]).",
                id="cachesweeper.E002",
            )
        )
    if errors:
        return errors
    return _check_caches(user)


def _check_caches(user: dict[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    kinds: dict[str, str | None] = {}
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
        kind = kinds[key] = _kind(backend)
        if not settings.DEBUG and kind in _W001_WHY:
            messages.append(
                Warning(
                    f'CACHESWEEPER["{key}"] uses {backend}, {_W001_WHY[kind]}',
                    hint="Use memcached or Redis (PyMemcacheCache, RedisCache or "
                    "django-redis), or serve the site from a single process.",
                    id="cachesweeper.W001",
                )
            )
    messages.extend(_check_version_cache(user, kinds))
    return messages


def _check_version_cache(user: dict[str, Any], kinds: dict[str, str | None]) -> list[CheckMessage]:
    """Counters need a store that keeps them and an ``add()`` that two creators cannot both win.

    ``tokens.create_counters`` relies on ``add()`` never overwriting: a counter being
    created while a sweep writes it must either keep the sweep's token or lose to it.
    """
    if "VERSION_CACHE" not in kinds:  # unknown alias, reported as E001
        return []
    alias = user.get("VERSION_CACHE", DEFAULTS["VERSION_CACHE"])
    backend = settings.CACHES[alias].get("BACKEND", "")
    kind = kinds["VERSION_CACHE"]
    if kind == "dummy" and kinds.get("CACHE") != "dummy":
        return [
            Error(
                f'CACHESWEEPER["VERSION_CACHE"] uses {backend}, which stores nothing: every '
                "token reads as missing, so every entry written to CACHE is a miss on its "
                "next read and sweeps have nowhere to go.",
                hint="Point VERSION_CACHE at a cache that stores (ideally Redis), or make "
                "CACHE a DummyCache too to turn caching off on purpose.",
                id="cachesweeper.E006",
            )
        ]
    if kind == "file" and not settings.DEBUG:
        return [
            Warning(
                f'CACHESWEEPER["VERSION_CACHE"] uses {backend}, whose add() checks for the '
                "file and then writes it, not atomically: a counter created while a sweep "
                "writes it can overwrite the sweep, and content rendered from data read "
                "before that sweep is then served as fresh until the next one.",
                hint="Keep counters in a cache with an atomic add(): Redis, memcached or "
                "(one process only) LocMem; FileBasedCache can still hold CACHE.",
                id="cachesweeper.W004",
            )
        ]
    return []


_EDGE = "cachesweeper.middleware.EdgeMiddleware"
_PAGES = "cachesweeper.middleware.PageCacheMiddleware"
_NEEDED_BEFORE_PAGES = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
)


@register(Tags.caches)
def check_edges(**kwargs: Any) -> list[CheckMessage]:
    """E004/W002: ``EDGES`` loads, and ``EdgeMiddleware`` is there to emit its headers."""
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
    """W003/E005: the middleware order the edge headers and page cache depend on."""
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
