"""``manage.py cachesweeper``: sweep, purge edges, show counters, look inside entries.

manage.py cachesweeper invalidate blog.Article 42 43   # sweep these instances
manage.py cachesweeper invalidate blog.Article         # sweep the model-level dependency
manage.py cachesweeper invalidate --tag frontpage      # sweep named tags
manage.py cachesweeper purge --url /blog/ https://example.com/about/
manage.py cachesweeper purge --all
manage.py cachesweeper stats [--json]                  # this process's counters only
manage.py cachesweeper inspect --url https://example.com/blog/?page=2
manage.py cachesweeper inspect --key cs:f:0123abcd...  # a key from the signals / toolbar
manage.py cachesweeper inspect --model blog.Article 42 # a dependency: token, last sweep
manage.py cachesweeper inspect --tag frontpage
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import types
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

from django.apps import apps
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.exceptions import DisallowedHost, ImproperlyConfigured, ValidationError
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)
from django.db import DEFAULT_DB_ALIAS, models
from django.http import HttpRequest
from django.test import RequestFactory
from django.urls import Resolver404, resolve

from cachesweeper import retries, stats, tokens
from cachesweeper.conf import conf
from cachesweeper.dependencies import instance_name, model_name, tag_name
from cachesweeper.edges.base import Edge
from cachesweeper.edges.loading import configured, dispatch, request_host
from cachesweeper.edges.queue import purges
from cachesweeper.entries import Entry
from cachesweeper.keys import make_key
from cachesweeper.pages import (
    PagePolicy,
    StoredPage,
    _dependencies,
    _pointer,
    _url,
    _variant_key,
)
from cachesweeper.rules import compile_rules, match
from cachesweeper.sweeps import invalidate_cache_for, invalidate_model, invalidate_tag

HELP = """Sweep dependencies, purge edge caches, show counters, inspect cache entries.

subcommands:
  invalidate app_label.Model [pk ...]   sweep instances (fetched with _base_manager), or the
                                        model-level dependency when no pk is given
  invalidate --tag NAME [NAME ...]      sweep named tags
  purge --url URL [URL ...]             purge paths or full URLs on the configured edges
  purge --all                           purge everything on the configured edges
  stats [--json]                        this process's counters (not your web workers')
  inspect --url URL                     the page-cache entry of an anonymous GET of URL
  inspect --key KEY                     any entry key shown by the signals or toolbar panel
  inspect --model app_label.Model [pk ...]
                                        a dependency (instances, or the model-level one):
                                        its name, current token and when it was last swept
  inspect --tag NAME [NAME ...]         the same for named tags

Run "manage.py cachesweeper SUBCOMMAND --help" for each one's options."""


class Command(BaseCommand):
    """``manage.py cachesweeper SUBCOMMAND``: the operator's view of the tokens and edges.

    Every subcommand works on this process's settings and caches; errors a user
    can fix (unknown model, pk or alias, bad tag, undeliverable purge) are
    ``CommandError`` with the fix in the message.
    """

    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", _Help)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="subcommand",
            metavar="SUBCOMMAND",
            required=True,
            **_subparser_options(parser),
        )

        invalidate = commands.add_parser(
            "invalidate",
            help="sweep instances, a model or named tags (content renders afresh)",
            description="Sweep instances of a model (by primary key), the model-level "
            "dependency (no pk: fragments and pages on the model class or a QuerySet "
            "of it; instance fragments stay), or named tags. Edge purges that follow "
            "are delivered before the command returns.",
        )
        invalidate.add_argument(
            "model", nargs="?", metavar="app_label.Model", help="the model, e.g. blog.Article"
        )
        invalidate.add_argument(
            "pks", nargs="*", metavar="pk", help="primary keys; none: the model-level dependency"
        )
        invalidate.add_argument(
            "--tag", nargs="+", dest="tags", metavar="NAME", default=[], help="named tags"
        )
        invalidate.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="database the rows are read from"
        )
        invalidate.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to wait for edge purges"
        )

        purge = commands.add_parser(
            "purge",
            help="purge URLs, or everything, on the configured edges",
            description="Purge paths or full URLs (a full URL's host is used as the "
            "public host) or everything on every CACHESWEEPER['EDGES'] backend, and wait "
            "for delivery. Tokens are not bumped: Django's own caches are untouched.",
        )
        which = purge.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--url", nargs="+", dest="urls", metavar="URL", help="/paths or http(s) URLs"
        )
        which.add_argument(
            "--all", action="store_true", dest="everything", help="purge everything"
        )
        purge.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")

        counters = commands.add_parser(
            "stats",
            help="this process's counters (hits, misses, sweeps, purges)",
            description="Print the counters of cachesweeper.stats for THIS process: a "
            "management command sees only what it did itself. Each web worker keeps its "
            "own; read cachesweeper.stats.snapshot() inside a worker for live numbers.",
        )
        counters.add_argument("--json", action="store_true", help="print JSON")

        inspect = commands.add_parser(
            "inspect",
            help="what the cache holds for a URL, an entry key or a dependency",
            description="--url: the page-cache entries (PAGE_RULES, then the view's "
            "cache_page) of an anonymous GET of URL, keyed as the page cache keys them. "
            "--key: any entry key, as the fragment_* signals and the debug toolbar panel "
            "show it. Prints the key, whether an entry exists, its dependency names with "
            "stored and current tokens, fresh or stale (and why), and its expiry. "
            "--model / --tag: a dependency instead of an entry: its name (also its edge "
            "tag), its current token and when it was last swept.",
        )
        target = inspect.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "--url", dest="url", help="a /path (first ALLOWED_HOSTS name) or an http(s) URL"
        )
        target.add_argument(
            "--key",
            "--fragment",
            dest="key",
            metavar="KEY",
            help="an entry key (cs:f:..., cs:p:...)",
        )
        target.add_argument(
            "--model",
            dest="model",
            metavar="app_label.Model",
            help="a model dependency; with pks, its instances' dependencies",
        )
        target.add_argument(
            "--tag", nargs="+", dest="tags", metavar="NAME", help="named tag dependencies"
        )
        inspect.add_argument("pks", nargs="*", metavar="pk", help="primary keys (with --model)")
        inspect.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="'Name: value'",
            help="a request header (for pages that Vary on it); repeatable",
        )
        inspect.add_argument(
            "--cache", metavar="ALIAS", help="cache alias of the entry (--key; default CACHE)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "invalidate": self.invalidate,
            "purge": self.purge,
            "stats": self.show_stats,
            "inspect": self.inspect,
        }
        handlers[options["subcommand"]](options)

    # -- invalidate ----------------------------------------------------------------

    def invalidate(self, options: dict[str, Any]) -> None:
        label: str | None = options["model"]
        pks: list[str] = options["pks"]
        tags: list[str] = options["tags"]
        if tags and label:
            raise CommandError("give either app_label.Model [pk ...] or --tag NAME ..., not both")
        if not tags and not label:
            raise CommandError("invalidate needs app_label.Model [pk ...] or --tag NAME ...")
        edges = _edges()
        before = _queue_counts()
        if tags:
            for tag in tags:
                _check_tag(tag)
            invalidate_tag(*tags)
            names = tags
        else:
            assert label is not None
            model = _model(label)
            if pks:
                instances = _instances(
                    model, pks, options["database"], "; nothing was invalidated"
                )
                for instance in instances:
                    invalidate_cache_for(instance)
                names = [instance_name(instance) for instance in instances]
            else:
                invalidate_model(model)
                names = [model_name(model)]
        self._check_swept(names)
        self.stdout.write(f"Invalidated {', '.join(names)}")
        if edges:
            self._deliver(edges, before, options["timeout"], strict=False)

    def _check_swept(self, names: Sequence[str]) -> None:
        """A bump that failed is retried in the background; here, say so and fail."""
        if not set(names) & set(retries.queue.pending()):
            return
        retries.queue.flush()
        failed = sorted(set(names) & set(retries.queue.pending()))
        if failed:
            raise CommandError(
                f"could not reach the version cache ({conf.VERSION_CACHE!r}) to sweep "
                f"{', '.join(failed)}; nothing changed for them (see the log)"
            )

    # -- purge ---------------------------------------------------------------------

    def purge(self, options: dict[str, Any]) -> None:
        edges = _edges()
        if not edges:
            raise CommandError(
                'no edges configured: set CACHESWEEPER["EDGES"] '
                '(e.g. [{"BACKEND": "cachesweeper.edges.Varnish", "OPTIONS": {...}}])'
            )
        if all(edge.request_bound for edge in edges):
            self._warn_request_bound(edges)
            raise CommandError("no configured edge can be purged from a management command")
        before = _queue_counts()
        if options["everything"]:
            dispatch([], everything=True)
            self.stdout.write(f"Purging everything on {_labels(edges)}")
        else:
            by_host = _urls_by_host(options["urls"])
            for host, paths in by_host.items():
                reset = request_host.set(host)
                try:
                    dispatch([], paths)
                finally:
                    request_host.reset(reset)
            count = sum(len(paths) for paths in by_host.values())
            self.stdout.write(f"Purging {count} URL(s) on {_labels(edges)}")
        self._deliver(edges, before, options["timeout"], strict=True)

    def _deliver(
        self, edges: Sequence[Edge], before: dict[str, int], timeout: float, strict: bool
    ) -> None:
        """Wait for the purge queue, then report what was delivered since ``before``."""
        self._warn_request_bound(edges)
        if not any(not edge.request_bound for edge in edges):
            return
        done = purges.flush(timeout)
        after = _queue_counts()
        delivered = after["delivered"] - before["delivered"]
        failed = after["failed"] - before["failed"]
        pending = purges.pending()
        self.stdout.write(
            f"Edge purges: {delivered} delivered, {failed} failed attempt(s), {pending} pending"
        )
        if not done:
            message = (
                f"{pending} purge(s) not delivered within {timeout:g}s; they are retried "
                "until this process exits, then logged as lost (see the log)"
            )
            if strict:
                raise CommandError(message)
            self.stderr.write(message)

    def _warn_request_bound(self, edges: Sequence[Edge]) -> None:
        for edge in edges:
            if edge.request_bound:
                self.stderr.write(
                    f"{edge.label}: purges ride on the responses of the process that swept; "
                    "a management command sends none, so its purges do not reach this "
                    "edge. Purge from a view (lscache_purge) or the edge's admin instead."
                )

    # -- stats ---------------------------------------------------------------------

    def show_stats(self, options: dict[str, Any]) -> None:
        snapshot = stats.snapshot()
        if options["json"]:
            self.stdout.write(json.dumps(snapshot, indent=2, sort_keys=True))
            return
        since = _when(snapshot["since"])
        ratio = snapshot["hit_ratio"]
        lines = [
            f"cachesweeper counters of this process (pid {snapshot['process']}) since {since}.",
            "They are per process: this command sees only its own work, and each web",
            "worker keeps its own; read cachesweeper.stats.snapshot() inside a worker.",
            "",
            f"served      hits {snapshot['hits']}, misses {snapshot['misses']}, "
            f"stale {snapshot['stale']}, hit ratio " + ("-" if ratio is None else f"{ratio:.1%}"),
            f"sweeps      {snapshot['sweeps']} sweeps, {snapshot['names_swept']} names bumped, "
            f"largest fan-out {snapshot['largest_sweep']}",
            f"purges      queued {snapshot['purges_queued']}, "
            f"delivered {snapshot['purges_delivered']}, "
            f"failed attempts {snapshot['purges_failed']}, "
            f"widened {snapshot['purges_widened']}, pending {snapshot['purges_pending']}",
        ]
        self.stdout.write("\n".join(lines))

    # -- inspect -------------------------------------------------------------------

    def inspect(self, options: dict[str, Any]) -> None:
        if options["pks"] and not options["model"]:
            raise CommandError("primary keys go with --model app_label.Model")
        if options["model"] or options["tags"]:
            blocks = _dependency_blocks(options["model"], options["pks"], options["tags"] or [])
            self.stdout.write("\n\n".join("\n".join(block) for block in blocks))
            return
        if options["key"]:
            alias = options["cache"] or conf.CACHE
            try:
                cache = caches[alias]
            except Exception as error:
                raise CommandError(f"unknown cache alias {alias!r}: {error}") from None
            self.stdout.write("\n".join(describe(options["key"], cache)))
            return
        request = _request(options["url"], options["header"])
        found = _page_policies(request)
        if not found:
            self.stdout.write(
                f"{request.build_absolute_uri()} is not page-cached: no PAGE_RULES entry "
                "matches its path and no cachesweeper.cache_page was found on its view."
            )
            return
        blocks = []
        for where, policy, args, kwargs in found:
            blocks.append(
                [f"Page cache ({where}):", *self._page_entry(request, policy, args, kwargs)]
            )
        self.stdout.write("\n\n".join("\n".join(block) for block in blocks))

    def _page_entry(
        self,
        request: HttpRequest,
        policy: PagePolicy,
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> list[str]:
        """The key ``pages._page_slot`` gives this request (an anonymous visitor), described."""
        if policy.only_if is not None and not policy.only_if(request):
            return ["  only_if declines this request: it is never cached"]
        try:
            dependencies = _dependencies(policy.tags, request, args, kwargs)
        except Exception as error:
            return [f"  could not compute the key: the view's tags raised {error!r}"]
        identity = [policy.key_func(request) if policy.key_func else _url(request)]
        identity += ["", *(f"{dep.name} {dep.scope}" for dep in dependencies)]
        base = make_key("p", identity)
        cache = caches[policy.using or conf.CACHE]
        lines = []
        vary = _pointer(_get(cache, base))
        key = base
        if vary is not None:
            key = _variant_key(base, request, vary)
            values = ", ".join(f"{name}={request.headers.get(name, '')!r}" for name in vary)
            lines.append(f"  varies on {', '.join(vary)}; this variant: {values} (see --header)")
        described = describe(key, cache)
        if _get(cache, key) is None:
            described += _why_not_stored(request)
        return lines + ["  " + line for line in described]


# -- describing a dependency -----------------------------------------------------------


def _dependency_blocks(
    label: str | None, pks: Sequence[str], tags: Sequence[str]
) -> list[list[str]]:
    """One described block per dependency: a model, its instances, or named tags."""
    if label is None:
        for tag in tags:
            _check_tag(tag)
        return describe_dependencies([(tag_name(tag), None) for tag in tags])
    model = _model(label)
    if not pks:
        return describe_dependencies([(model_name(model), None)])
    attribute = tokens.attribute_for(model)
    found = [
        (instance_name(instance), (attribute, getattr(instance, attribute)) if attribute else None)
        for instance in _instances(model, pks, DEFAULT_DB_ALIAS, "; there is nothing to inspect")
    ]
    return describe_dependencies(found)


def describe_dependencies(
    found: Sequence[tuple[str, tuple[str, Any] | None]],
) -> list[list[str]]:
    """Name, token strategy, current token and when it was last swept, per dependency.

    ``found`` pairs each name with ``(attribute, value)`` for attribute tokens, or
    ``None`` for counters; counters are read, never created.
    """
    counters = _current_counters([name for name, attribute in found if attribute is None])
    blocks = []
    for name, attribute in found:
        lines = [f"dependency     {name} (also its edge tag)"]
        if attribute is not None:
            lines += [
                f"token          attribute {attribute[0]} = {attribute[1]!r} (read from the row)",
                "last swept     when the row last changed: saving it changes the token",
            ]
            blocks.append(lines)
            continue
        token = counters.get(name)
        if token is None:
            lines += [
                "token          counter, none in the version cache (never read since the "
                "cache was emptied, or evicted): the next read creates one and misses",
                "last swept     unknown",
            ]
        else:
            made = _when(tokens.made_at(token))
            swept = tokens.swept_at(token)
            lines.append(f"token          counter {token}")
            if swept is None:
                lines.append(
                    f"last swept     not since the counter was created at {made} "
                    "(by the first read after it went missing)"
                )
            else:
                lines.append(f"last swept     {_when(swept)} ({time.time() - swept:.0f}s ago)")
        blocks.append(lines)
    return blocks


# -- describing an entry ---------------------------------------------------------------


def describe(key: str, cache: BaseCache) -> list[str]:
    """What ``cache`` holds under ``key``: dependencies, tokens, fresh or stale, expiry."""
    raw = _get(cache, key)
    lines = [f"key            {key}"]
    if raw is None:
        return [
            *lines,
            "entry          none (never stored, expired, evicted, or another cache "
            "alias: see --cache)",
        ]
    vary = _pointer(raw)
    if vary is not None:
        return [
            *lines,
            f"entry          a Vary pointer: the page varies on {', '.join(vary)} "
            "and each variant has its own key (inspect --url with --header)",
        ]
    entry = Entry.load(raw)
    if entry is None:
        return [*lines, "entry          not a cachesweeper entry"]
    lines.append(f"content        {_content(entry.payload)}")
    now = time.time()
    current = _current_counters(entry.counters)
    moved = []
    lines.append(f"dependencies   {len(entry.counters) + len(entry.attributes)}")
    for name, token in entry.counters.items():
        now_token = current.get(name)
        if now_token == token:
            verdict = "unchanged"
        else:
            moved.append(name)
            verdict = _moved(now_token)
        lines.append(f"  {name}  counter {token} -> {_or_dash(now_token)}  {verdict}")
    for name, value in entry.attributes.items():
        known, now_value = _current_attribute(name)
        if not known:
            verdict = "cannot check (instance not found)"
        elif now_value == value:
            verdict = "unchanged"
        else:
            moved.append(name)
            verdict = "changed"
        lines.append(f"  {name}  attribute {value!r} -> {now_value!r}  {verdict}")
    if entry.fresh_until is None:
        lines.append("fresh until    no expiry")
    else:
        left = entry.fresh_until - now
        relative = f"in {left:.0f}s" if left >= 0 else f"{-left:.0f}s ago"
        lines.append(f"fresh until    {_when(entry.fresh_until)} ({relative})")
    if entry.stale_since is not None:
        lines.append(f"stale since    {_when(entry.stale_since)} (a regeneration failed)")
    expired = entry.fresh_until is not None and now >= entry.fresh_until
    if not moved and not expired and entry.stale_since is None:
        lines.append("state          fresh: the next read is a hit")
    else:
        reasons = []
        if moved:
            reasons.append(f"tokens moved ({', '.join(moved)})")
        if expired:
            reasons.append("expired")
        if entry.stale_since is not None:
            reasons.append("marked stale")
        lines.append(
            f"state          stale: {', '.join(reasons)}; the next read re-renders "
            "(or serves this copy while the fragment's or page's grace allows)"
        )
    return lines


def _moved(token: int | None) -> str:
    """Why a stored counter token no longer matches: swept (when), or evicted."""
    if token is None:
        return "counter missing (evicted or flushed)"
    when = tokens.swept_at(token)
    return "swept" if when is None else f"swept at {_when(when)}"


def _content(payload: Any) -> str:
    if isinstance(payload, tuple) and len(payload) == len(StoredPage._fields):
        page = StoredPage(*payload)
        age = time.time() - page.stored_at
        return (
            f"page: status {page.status}, {len(page.content)} bytes, ETag {page.etag}, "
            f"stored {age:.0f}s ago"
        )
    if isinstance(payload, str):
        return f"fragment: {len(payload)} characters"
    return f"{type(payload).__name__}"


def _current_counters(names: Iterable[str]) -> dict[str, int]:
    """Current counter tokens, read only (a missing counter is not created)."""
    names = list(names)
    if not names:
        return {}
    try:
        return tokens.read_counters(caches[conf.VERSION_CACHE], names)
    except Exception as error:
        raise CommandError(f"could not read the version cache: {error}") from None


def _current_attribute(name: str) -> tuple[bool, Any]:
    """The current value of an attribute token ``app_label.model.pk``, if the row exists."""
    try:
        app_label, model_label, pk = name.split(".", 2)
        model = apps.get_model(app_label, model_label)
        attribute = tokens.strategy_for(model)
        row = model._base_manager.filter(pk=unquote(pk)).values_list(attribute, flat=True)
        values = list(row[:1])
    except Exception:
        return False, None
    return (True, values[0]) if values else (False, None)


def _get(cache: BaseCache, key: str) -> Any:
    try:
        return cache.get(key)
    except Exception as error:
        raise CommandError(f"could not read the cache: {error}") from None


# -- helpers ---------------------------------------------------------------------------


class _Help(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's help layout, keeping the line breaks of the subcommand list."""


def _subparser_options(parser: CommandParser) -> dict[str, Any]:
    """Older Djangos do not pass ``called_from_command_line`` on to subparsers."""
    if "add_subparsers" in vars(CommandParser):
        return {}
    return {
        "parser_class": functools.partial(
            CommandParser, called_from_command_line=parser.called_from_command_line
        )
    }


def _edges() -> list[Edge]:
    try:
        return configured()
    except ImproperlyConfigured as error:
        raise CommandError(f'CACHESWEEPER["EDGES"] is misconfigured: {error}') from None


def _labels(edges: Sequence[Edge]) -> str:
    return ", ".join(edge.label for edge in edges)


def _queue_counts() -> dict[str, int]:
    return {"delivered": purges.stats.delivered, "failed": purges.stats.failed}


def _check_tag(tag: str) -> None:
    if not tag.strip():
        raise CommandError(f"bad tag {tag!r}: a tag name cannot be empty or blank")
    if any(ord(char) < 32 or ord(char) == 127 for char in tag):
        raise CommandError(f"bad tag {tag!r}: a tag name cannot contain control characters")


def _model(label: str) -> type[models.Model]:
    if label.count(".") != 1:
        raise CommandError(
            f"{label!r} is not app_label.Model: {_spelled(label)} (the app's label, a dot, "
            "the model's name)"
        )
    try:
        return apps.get_model(label)
    except LookupError as error:
        raise CommandError(f"unknown model {label!r}: {error}") from None


def _spelled(label: str) -> str:
    """How to write ``label``: the installed models of that name, or an example."""
    name = label.rsplit(".", 1)[-1].lower()
    found = [model._meta.label for model in apps.get_models() if model._meta.model_name == name]
    if found:
        return f"write {' or '.join(found)}"
    return "write it like blog.Article"


def _instances(
    model: type[models.Model], pks: Sequence[str], database: str, missing_means: str = ""
) -> list[Any]:
    """The rows with ``pks``, in the order given; an error names any that do not exist.

    ``missing_means`` finishes that error: what the command did not do because of it.
    """
    pk_field = model._meta.pk
    assert pk_field is not None
    try:
        wanted = [(raw, pk_field.to_python(raw)) for raw in pks]
        rows = model._base_manager.db_manager(database).filter(
            pk__in=[value for _, value in wanted]
        )
        found = {row.pk: row for row in rows}
    except (ValidationError, ValueError, TypeError) as error:
        messages = getattr(error, "messages", [str(error)])
        raise CommandError(f"bad pk for {model._meta.label}: {' '.join(messages)}") from None
    missing = [raw for raw, value in wanted if value not in found]
    if missing:
        raise CommandError(
            f"{model._meta.label} has no row with pk {', '.join(missing)}{missing_means}"
        )
    return list({value: found[value] for _, value in wanted}.values())


def _urls_by_host(urls: Sequence[str]) -> dict[str | None, list[str]]:
    """Paths to purge, grouped by the host of full URLs (``None`` for bare paths)."""
    grouped: dict[str | None, list[str]] = {}
    for url in urls:
        parts = urlsplit(url)
        host: str | None = None
        if parts.scheme or parts.netloc:
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise CommandError(f"not an http(s) URL or a path: {url!r}")
            host = parts.netloc
        elif not url.startswith("/"):
            raise CommandError(f"not a URL or a path starting with '/': {url!r}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(char.isspace() or ord(char) < 32 for char in path):
            raise CommandError(
                f"a purge path cannot contain spaces or control characters: {url!r}"
            )
        grouped.setdefault(host, []).append(path)
    return grouped


def _why_not_stored(request: HttpRequest) -> list[str]:
    """Ask the page once, as a visitor without cookies, and say what the page cache did."""
    from django.test import Client

    client = Client(raise_request_exception=False)
    meta = {name: value for name, value in request.META.items() if name.startswith("HTTP_")}
    response = client.get(request.get_full_path(), secure=request.is_secure(), **meta)
    reason = getattr(response, "cachesweeper_refusal", None)
    asked = f"asked now as a visitor without cookies (status {response.status_code}):"
    if reason is None:
        return [f"{asked} shareable; inspect again to see its entry"]
    return [f"{asked} not stored: {reason}"]


def _request(url: str, headers: Sequence[str]) -> HttpRequest:
    """A GET from an anonymous visitor (no cookies), as the page cache would see it."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(f"not an http(s) URL or a path: {url!r}")
        host = parts.netloc
    elif url.startswith("/"):
        host = _default_host()
    else:
        raise CommandError(f"not a URL or a path starting with '/': {url!r}")
    meta: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise CommandError(f"--header takes 'Name: value', not {header!r}")
        meta_name = name.strip().upper().replace("-", "_")
        if meta_name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            meta_name = f"HTTP_{meta_name}"
        meta[meta_name] = value.strip()
    if "HTTP_COOKIE" in meta or "HTTP_AUTHORIZATION" in meta:
        raise CommandError(
            "inspect --url shows what anonymous visitors get; drop the Cookie/Authorization header"
        )
    meta["HTTP_HOST"] = host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = RequestFactory().get(path, secure=parts.scheme == "https")
    request.META.update(meta)
    try:
        request.get_host()
    except DisallowedHost as error:
        raise CommandError(f"{error} (Django would answer 400 for this host)") from None
    return request


def _default_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        host = host.lstrip(".")
        if host and "*" not in host:
            return host
    return "localhost"


def _page_policies(
    request: HttpRequest,
) -> list[tuple[str, PagePolicy, tuple[Any, ...], dict[str, Any]]]:
    """Where this URL's pages are cached: a ``PAGE_RULES`` rule, then the view's decorator."""
    found: list[tuple[str, PagePolicy, tuple[Any, ...], dict[str, Any]]] = []
    try:
        rule = match(compile_rules(conf.PAGE_RULES), request.path)
    except ValueError as error:
        raise CommandError(f'CACHESWEEPER["PAGE_RULES"] is misconfigured: {error}') from None
    if rule is not None:
        policy = PagePolicy(rule.ttl, tags=rule.tags, grace=rule.grace)
        found.append((f"PAGE_RULES {rule.pattern!r}", policy, (), {}))
    try:
        resolved = resolve(request.path_info)
    except Resolver404:
        return found
    for policy in view_policies(resolved.func):
        where = f"cache_page on {resolved.view_name or resolved._func_path}"
        found.append((where, policy, tuple(resolved.args), dict(resolved.kwargs)))
    return found


def view_policies(view: Any) -> list[PagePolicy]:
    """The ``cache_page`` policies wrapped around ``view``, outermost first.

    Follows ``functools.wraps`` chains and closures, and ``method_decorator`` on
    class-based views (``dispatch``, ``get``, ``head``). A decorator that hides
    the view in some other way is not seen.
    """
    found: list[PagePolicy] = []
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(view, 0)]
    while todo:
        obj, depth = todo.pop(0)
        if id(obj) in seen or depth > 10:
            continue
        seen.add(id(obj))
        if isinstance(obj, PagePolicy):
            found.append(obj)
            continue
        if isinstance(obj, (list, tuple)):
            todo += [(item, depth + 1) for item in obj[:20]]
            continue
        if isinstance(obj, functools.partial):
            todo.append((obj.func, depth + 1))
            continue
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        if not isinstance(obj, types.FunctionType):
            continue
        view_class = getattr(obj, "view_class", None)
        if isinstance(view_class, type):
            todo += [
                (getattr(view_class, name), depth + 1)
                for name in ("dispatch", "get", "head")
                if hasattr(view_class, name)
            ]
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            todo.append((wrapped, depth + 1))
        for cell in obj.__closure__ or ():
            try:
                todo.append((cell.cell_contents, depth + 1))
            except ValueError:  # an empty cell
                continue
    return found


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
