"""System checks: misconfiguration is reported by ``manage.py check``, with the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from cachesweeper import esi
from cachesweeper.conf import DEFAULTS
from cachesweeper.edges.base import Edge
from cachesweeper.edges.loading import build, configured
from cachesweeper.registry import registrations
from cachesweeper.rules import compile_rules

if TYPE_CHECKING:
    from django.db.models import Model


def _backend_class(backend: str) -> type | None:
    try:
        found = import_string(backend)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def _kind(backend: str) -> str | None:
    """Which of Django's unshared or unstoring backends ``backend`` is (or subclasses)."""
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
    """E001/E002/E003/E006/E007, W001/W004: the ``CACHESWEEPER`` dict and the caches it names.

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
    interval = user.get("WARNING_INTERVAL", 60)
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval < 0:
        errors.append(
            Error(
                f'CACHESWEEPER["WARNING_INTERVAL"] must be seconds >= 0, not {interval!r}.',
                hint='Use a number such as "WARNING_INTERVAL": 60 (the default); 0 warns '
                "about every failure of an unreachable cache.",
                id="cachesweeper.E002",
            )
        )
    limit = user.get("INSTANCE_LIMIT", 100)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        errors.append(
            Error(
                f'CACHESWEEPER["INSTANCE_LIMIT"] must be a whole number >= 1, not {limit!r}.',
                hint='Use an int such as "INSTANCE_LIMIT": 100 (the default): past that many '
                "rows of one model, a touch path or a page depends on the model instead.",
                id="cachesweeper.E002",
            )
        )
    if not isinstance(user.get("JOURNAL", True), bool):
        errors.append(
            Error(
                f'CACHESWEEPER["JOURNAL"] must be True or False, not {user["JOURNAL"]!r}.',
                hint='Use "JOURNAL": True (the default) to write sweeps to the journal table, '
                "or False to keep them in memory only.",
                id="cachesweeper.E002",
            )
        )
    if not isinstance(user.get("DATABASE_TRIGGERS", False), bool):
        errors.append(
            Error(
                'CACHESWEEPER["DATABASE_TRIGGERS"] must be True or False, not '
                f"{user['DATABASE_TRIGGERS']!r}.",
                hint='Use "DATABASE_TRIGGERS": True to install triggers on registered tables '
                "at migrate (PostgreSQL), or False (the default).",
                id="cachesweeper.E002",
            )
        )
    delay = user.get("RELAY_DELAY", 3.0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
        errors.append(
            Error(
                f'CACHESWEEPER["RELAY_DELAY"] must be seconds >= 0, not {delay!r}.',
                hint='Use a number such as "RELAY_DELAY": 3.0 (the default): how long a '
                "journaled sweep waits for its own process before a relay replays it.",
                id="cachesweeper.E002",
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
    return [*_check_key_prefix(user), *_check_caches(user)]


#: The longest key the library writes after its prefix: ``:<kind>:<32 hex>:lock``.
_KEY_TAIL = ":p:" + "0" * 32 + ":lock"
#: memcached's limit on a key, in bytes.
_MEMCACHED_KEY_BYTES = 250


def _check_key_prefix(user: dict[str, Any]) -> list[CheckMessage]:
    """E007: a ``KEY_PREFIX`` that makes keys no backend-safe client accepts.

    Every key starts with the prefix, so a space in it makes memcached refuse
    every read and every sweep: the site would run uncached, logging outages.
    """
    prefix = user.get("KEY_PREFIX", DEFAULTS["KEY_PREFIX"])
    bad = sorted({char for char in prefix if char.isspace() or not char.isprintable()})
    if bad:
        return [
            Error(
                f'CACHESWEEPER["KEY_PREFIX"] {prefix!r} contains whitespace or control '
                f"characters ({', '.join(map(repr, bad))}): every cache key starts with it, "
                "and memcached refuses such keys, so every read and sweep would fail.",
                hint=f'Use letters, digits and punctuation only, e.g. "KEY_PREFIX": '
                f"{_cleaned(prefix)!r}.",
                id="cachesweeper.E007",
            )
        ]
    longest = max(_key_bytes(user, key, prefix + _KEY_TAIL) for key in ("CACHE", "VERSION_CACHE"))
    if longest > _MEMCACHED_KEY_BYTES:
        room = len(prefix.encode()) - (longest - _MEMCACHED_KEY_BYTES)
        return [
            Error(
                f'CACHESWEEPER["KEY_PREFIX"] is too long: with it the longest cache keys are '
                f"{longest} bytes, and memcached refuses keys over {_MEMCACHED_KEY_BYTES}.",
                hint=f"Shorten it to {max(room, 1)} bytes at most (the cache's own KEY_PREFIX "
                "and VERSION count too).",
                id="cachesweeper.E007",
            )
        ]
    return []


def _cleaned(prefix: str) -> str:
    """``prefix`` without the characters that break keys (a suggestion for the hint)."""
    cleaned = "".join("-" if char.isspace() else char for char in prefix if char.isprintable())
    return cleaned.strip("-") or str(DEFAULTS["KEY_PREFIX"])


def _key_bytes(user: dict[str, Any], setting: str, key: str) -> int:
    """Length in bytes of ``key`` as the cache named by ``setting`` sends it (its make_key)."""
    alias = user.get(setting, DEFAULTS[setting])
    try:
        key = caches[alias].make_key(key)
    except Exception:  # an unknown alias (E001) or a backend that cannot be built
        pass
    return len(key.encode("utf-8", "surrogatepass"))


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
    """E004/W002/W005: ``EDGES`` loads, and ``EdgeMiddleware`` is there to emit its headers."""
    raw = getattr(settings, "CACHESWEEPER", {})
    items = raw.get("EDGES", []) if isinstance(raw, dict) else []
    if not isinstance(items, (list, tuple)):
        return [
            Error(
                f'CACHESWEEPER["EDGES"] must be a list, not {type(items).__name__}.',
                hint=f"Use a list of edges, e.g. [{_EXAMPLES['Varnish']}].",
                id="cachesweeper.E004",
            )
        ]
    errors = [error for item in items for error in _check_edge(item)]
    if errors:
        return errors
    edges = configured()
    if not edges:
        return _check_cachepurge()
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    messages: list[CheckMessage] = []
    if _EDGE not in middleware:
        messages.append(
            Warning(
                "CACHESWEEPER has EDGES but EdgeMiddleware is not in MIDDLEWARE: responses "
                "carry no edge headers, and LiteSpeed purges are never sent.",
                hint=f'Add "{_EDGE}" first in MIDDLEWARE.',
                id="cachesweeper.W002",
            )
        )
    return messages + _check_esi()


def _check_esi() -> list[CheckMessage]:
    """E009: an edge has ``esi`` on, and its includes would point nowhere."""
    if not esi.enabled() or esi.mounted():
        return []
    return [
        Error(
            "An edge has OPTIONS['esi'] but cachesweeper.urls is not in the URLconf: holes "
            "cannot become ESI includes, so Django fills them and their pages are private.",
            hint='Add path("_cachesweeper/", include("cachesweeper.urls")) to your urlpatterns.',
            id="cachesweeper.E009",
        )
    ]


#: A working ``EDGES`` item per shipped backend, for hints.
_EXAMPLES = {
    "Varnish": '{"BACKEND": "cachesweeper.edges.Varnish", '
    '"OPTIONS": {"servers": ["http://127.0.0.1:6081"]}}',
    "Squid": '{"BACKEND": "cachesweeper.edges.Squid", '
    '"OPTIONS": {"servers": ["http://127.0.0.1:3128"], "host": "www.example.com"}}',
    "Fastly": '{"BACKEND": "cachesweeper.edges.Fastly", '
    '"OPTIONS": {"service_id": "SU1Z0isxPaozGVKXdv0eY", "api_token": os.environ["FASTLY_KEY"]}}',
    "Cloudflare": '{"BACKEND": "cachesweeper.edges.Cloudflare", "OPTIONS": '
    '{"zone_id": "023e105f4ecef8ad9ca31a8372d0c353", "api_token": os.environ["CF_TOKEN"]}}',
    "LiteSpeed": '{"BACKEND": "cachesweeper.edges.LiteSpeed", "OPTIONS": {"stale": True}}',
}


def _check_edge(item: Any) -> list[CheckMessage]:
    """E004 for one ``EDGES`` item, with an example of that backend's configuration."""
    try:
        build(item)
    except (ImproperlyConfigured, TypeError) as error:
        backend = item.get("BACKEND") if isinstance(item, dict) else None
        return [
            Error(
                f'CACHESWEEPER["EDGES"] is invalid: {error}',
                hint=_edge_hint(backend),
                id="cachesweeper.E004",
            )
        ]
    return []


def _edge_hint(backend: object) -> str:
    """An example item for ``backend`` (or the backend it subclasses), else the choices."""
    found = _backend_class(backend) if isinstance(backend, str) else None
    if found is not None and issubclass(found, Edge):
        for klass in found.__mro__:
            if klass.__module__.startswith("cachesweeper.edges.") and klass.__name__ in _EXAMPLES:
                return f"For example: {_EXAMPLES[klass.__name__]}."
        options = ", ".join(f'"{name}": ...' for name in found.options)
        return f'Write it as {{"BACKEND": "{backend}", "OPTIONS": {{{options}}}}}.'
    shipped = ", ".join(f"cachesweeper.edges.{name}" for name in _EXAMPLES)
    return (
        'Each item is {"BACKEND": "<dotted path of an Edge class>", "OPTIONS": {...}}; '
        f"the shipped backends are {shipped}."
    )


def _check_cachepurge() -> list[CheckMessage]:
    """W005: django-cachepurge's ``CACHE_URLS`` is set, and nothing here reads it."""
    urls = getattr(settings, "CACHE_URLS", None)
    if not urls:
        return []
    servers = [urls] if isinstance(urls, str) else list(urls)
    entry = {"BACKEND": "cachesweeper.edges.Squid", "OPTIONS": {"servers": servers}}
    return [
        Warning(
            "CACHE_URLS (django-cachepurge's setting) is set but CACHESWEEPER has no EDGES: "
            "cachesweeper does not read CACHE_URLS, so no PURGE reaches those caches.",
            hint=f'Set CACHESWEEPER["EDGES"] = [{entry!r}] (the same PURGE <url> requests, '
            "for the URLs of get_absolute_url() or register(Model, purge_urls=...)), add "
            f'"{_EDGE}" first in MIDDLEWARE, and remove CACHE_URLS.',
            id="cachesweeper.W005",
        )
    ]


@register(Tags.caches)
def check_middleware_order(**kwargs: Any) -> list[CheckMessage]:
    """W003/E005: the middleware order the edge headers and page cache depend on."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    messages: list[CheckMessage] = []
    if _EDGE in middleware and middleware.index(_EDGE) != 0:
        messages.append(
            Warning(
                "EdgeMiddleware is not first in MIDDLEWARE: what the middleware before it "
                "renders or changes is not tagged for the edges.",
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


@register(Tags.caches, Tags.models)
def check_token_attributes(**kwargs: Any) -> list[CheckMessage]:
    """E008: a registered model's token attribute (``using=`` or ``USING``) is missing.

    At run time such a model falls back to counters without a word, so a site
    configured for zero-round-trip attribute tokens silently pays for counters.
    """
    user = getattr(settings, "CACHESWEEPER", {})
    default = user.get("USING", DEFAULTS["USING"]) if isinstance(user, dict) else None
    errors: list[CheckMessage] = []
    for model, registration in registrations().items():
        own = registration.strategy is not None
        strategy = registration.strategy if own else default
        if not isinstance(strategy, str) or strategy == "counter" or hasattr(model, strategy):
            continue
        errors.append(_missing_attribute(model, strategy, own))
    return errors


def _missing_attribute(model: type[Model], attribute: str, own: bool) -> CheckMessage:
    label = model._meta.label
    where = (
        f"cachesweeper.register({model.__name__}, using={attribute!r})"
        if own
        else f'CACHESWEEPER["USING"] = {attribute!r}'
    )
    changing = [
        field.name for field in model._meta.get_fields() if getattr(field, "auto_now", False)
    ]
    known = f" (those that change on every save: {', '.join(changing)})" if changing else ""
    keep = "" if own else f'; or keep counters for it: register({model.__name__}, using="counter")'
    return Error(
        f"{where}: {label} has no field {attribute!r}, so its tokens would silently be "
        "counters in the version cache instead.",
        hint=f"Name a field {label} has{known}, or add one, e.g. "
        f"{attribute} = models.DateTimeField(auto_now=True){keep}.",
        id="cachesweeper.E008",
    )


@register(Tags.database)
def check_journal(databases: Sequence[str] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """W006: ``JOURNAL`` is on but a database that may hold the journal lacks its table.

    A database check (``manage.py check --database default``, and ``migrate``
    runs it), as Django's own: other checks never open a connection. Without
    the table, sweeps work as before, in memory only.
    """
    user = getattr(settings, "CACHESWEEPER", {})
    wanted = user.get("JOURNAL", DEFAULTS["JOURNAL"]) if isinstance(user, dict) else False
    if not wanted or not databases:
        return []
    from cachesweeper import journal

    return [
        _journal_missing(alias)
        for alias in databases
        if journal.allowed(alias) and not journal.has_table(alias)
    ]


def _journal_missing(alias: str) -> Warning:
    """W006, worded for why the table is missing: not migrated yet (``migrate`` itself
    runs this check before it creates the table), or missing though migrated.
    """
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    from cachesweeper.journal import MIGRATION
    from cachesweeper.journal import TABLE as table

    try:
        applied = MIGRATION in MigrationRecorder(connections[alias]).applied_migrations()
    except Exception:
        applied = False
    kept = (
        "sweeps made in its transactions are kept in memory only: a process that dies "
        "before its sweep, or while the version cache is down, leaves fragments stale "
        "until their timeout."
    )
    if not applied:
        return Warning(
            f"the cachesweeper journal table ({table}) is not created yet on database "
            f"{alias!r} (migration {'.'.join(MIGRATION)} is not applied); until it is, {kept}",
            hint=f'Run "manage.py migrate --database {alias}" (if this is migrate, it is '
            'creating it now), or set CACHESWEEPER["JOURNAL"] = False.',
            id="cachesweeper.W006",
        )
    return Warning(
        f"the cachesweeper journal table ({table}) is missing on database {alias!r}, "
        f"although migration {'.'.join(MIGRATION)} is recorded as applied (was it faked, "
        f"or did a router send it elsewhere?), so {kept}",
        hint=f'Run "manage.py migrate cachesweeper zero --fake --database {alias}", then '
        f'"manage.py migrate cachesweeper --database {alias}"; or set '
        'CACHESWEEPER["JOURNAL"] = False.',
        id="cachesweeper.W006",
    )


@register()
def check_triggers(**kwargs: Any) -> list[CheckMessage]:
    """E010: ``DATABASE_TRIGGERS`` is on, but a database the journal may live on is not
    PostgreSQL: the triggers are written in PL/pgSQL, and the relay wakes on ``NOTIFY``.
    """
    user = getattr(settings, "CACHESWEEPER", {})
    if not (isinstance(user, dict) and user.get("DATABASE_TRIGGERS")):
        return []
    from django.db import connections

    from cachesweeper import journal

    if user.get("JOURNAL", True) is False:
        return [
            Error(
                'CACHESWEEPER["DATABASE_TRIGGERS"] is on but "JOURNAL" is off: triggers '
                "write to the journal, so no trigger is installed and bulk writes do not sweep.",
                hint='Turn "JOURNAL" on (the default), or "DATABASE_TRIGGERS" off.',
                id="cachesweeper.E010",
            )
        ]
    return [
        Error(
            f'CACHESWEEPER["DATABASE_TRIGGERS"] is on, but database {alias!r} is '
            f"{connections[alias].vendor}: database triggers need PostgreSQL, so writes "
            "outside the ORM's signals (update(), bulk writes, raw SQL) would not sweep there.",
            hint="Use PostgreSQL, route the cachesweeper app away from this database, or set "
            'CACHESWEEPER["DATABASE_TRIGGERS"] = False and sweep bulk writes with '
            "invalidate_queryset().",
            id="cachesweeper.E010",
        )
        for alias in settings.DATABASES
        if connections[alias].vendor != "postgresql" and journal.allowed(alias)
    ]


@register(Tags.database)
def check_trigger_status(
    databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W007: a registered table's trigger is missing or out of date (a database check)."""
    user = getattr(settings, "CACHESWEEPER", {})
    if not (isinstance(user, dict) and user.get("DATABASE_TRIGGERS")) or not databases:
        return []
    from cachesweeper import journal, triggers

    messages: list[CheckMessage] = []
    for alias in databases:
        if not triggers.wanted(alias) or not journal.has_table(alias):
            continue
        stale = [found for found in triggers.status(alias) if found.state != "current"]
        for found in stale:
            messages.append(
                Warning(
                    f"the cachesweeper trigger of table {found.table} on database {alias!r} "
                    f"is {found.state}: writes to it outside the ORM's signals (update(), "
                    "bulk writes, raw SQL, other programs) do not sweep as registered.",
                    hint=f'Run "manage.py migrate --database {alias}" (it installs them), or '
                    f'"manage.py cachesweeper triggers --install --database {alias}".',
                    id="cachesweeper.W007",
                )
            )
    return messages
