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
manage.py cachesweeper relay [--once]                  # replay the journal (a worker)
manage.py cachesweeper triggers [--install]            # database triggers, per table
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)
from django.db import DEFAULT_DB_ALIAS

from cachesweeper import inspection, journal, retries, stats, triggers
from cachesweeper.conf import conf
from cachesweeper.dependencies import hierarchy_names, model_names
from cachesweeper.edges.base import Edge
from cachesweeper.edges.loading import configured, dispatch, request_host
from cachesweeper.edges.queue import purges
from cachesweeper.listening import Listener
from cachesweeper.relay import relay
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
  relay [--once] [--database ALIAS]     replay the journal: sweeps a dead process, a down
                                        version cache or a down edge left unfinished
  triggers [--install] [--database ALIAS]
                                        per registered table: its database trigger is
                                        installed and current, out of date, or missing

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

        replay = commands.add_parser(
            "relay",
            help="replay the journal in the foreground (a dedicated worker)",
            description="Replay what is left in the journal of each database: sweeps "
            "whose process died before bumping, bumps the version cache did not take, "
            "purges an edge did not take. Every process that sweeps runs a relay thread "
            "already; this one is for a dedicated worker, or for a one-off --once. "
            "Several relays may run at once: each row is claimed by one of them.",
        )
        trigger = commands.add_parser(
            "triggers",
            help="list the database triggers of registered tables (PostgreSQL)",
            description='With CACHESWEEPER["DATABASE_TRIGGERS"] = True, migrate installs '
            "a trigger on each registered table: every write to it sweeps. This lists, "
            "per table, whether its trigger is installed and current.",
        )
        trigger.add_argument(
            "--install", action="store_true", help="install or update them now, as migrate does"
        )
        trigger.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, metavar="ALIAS", help="default: default"
        )
        replay.add_argument(
            "--once", action="store_true", help="one pass, wait for its purges, then exit"
        )
        replay.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="a database whose journal to replay (repeatable; default: all)",
        )
        replay.add_argument(
            "--delay",
            type=float,
            default=None,
            help='replay rows older than this many seconds (default: CACHESWEEPER["RELAY_DELAY"])',
        )
        replay.add_argument(
            "--interval", type=float, default=1.0, help="seconds between two passes"
        )
        replay.add_argument(
            "--timeout", type=float, default=10.0, help="with --once: seconds to wait for purges"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "invalidate": self.invalidate,
            "purge": self.purge,
            "stats": self.show_stats,
            "inspect": self.inspect,
            "relay": self.relay,
            "triggers": self.triggers,
        }
        try:
            handlers[options["subcommand"]](options)
        except inspection.InspectionError as error:
            raise CommandError(str(error)) from None

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
                inspection.check_tag(tag)
            invalidate_tag(*tags)
            names = tags
        else:
            assert label is not None
            model = inspection.find_model(label)
            if pks:
                instances = inspection.find_instances(
                    model, pks, options["database"], "; nothing was invalidated"
                )
                for instance in instances:
                    invalidate_cache_for(instance)
                names = [name for instance in instances for name in hierarchy_names(instance)]
            else:
                invalidate_model(model)
                names = model_names(model)
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
            later = (
                "; they are in the journal: a relay sweeps them once the cache answers"
                if set(failed) <= retries.queue.journaled
                else ""
            )
            raise CommandError(
                f"could not reach the version cache ({conf.VERSION_CACHE!r}) to sweep "
                f"{', '.join(failed)}; nothing changed for them yet (see the log){later}"
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
            then = (
                "left in the journal for a relay"
                if conf.JOURNAL and journal.usable(DEFAULT_DB_ALIAS)
                else "logged as lost"
            )
            message = (
                f"{pending} purge(s) not delivered within {timeout:g}s; they are retried "
                f"until this process exits, then {then} (see the log)"
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
        since = inspection.when(snapshot["since"])
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
            blocks = inspection.dependency_blocks(
                options["model"], options["pks"], options["tags"] or []
            )
            self.stdout.write("\n\n".join("\n".join(block) for block in blocks))
            return
        if options["key"]:
            alias = options["cache"] or conf.CACHE
            try:
                cache = caches[alias]
            except Exception as error:
                raise CommandError(f"unknown cache alias {alias!r}: {error}") from None
            self.stdout.write("\n".join(inspection.describe(options["key"], cache)))
            return
        request = inspection.anonymous_request(options["url"], options["header"])
        found = inspection.page_policies(request)
        if not found:
            self.stdout.write(
                f"{request.build_absolute_uri()} is not page-cached: no PAGE_RULES entry "
                "matches its path and no cachesweeper.cache_page was found on its view."
            )
            return
        blocks = []
        for where, policy, args, kwargs in found:
            blocks.append(
                [f"Page cache ({where}):", *inspection.page_entry(request, policy, args, kwargs)]
            )
        self.stdout.write("\n\n".join("\n".join(block) for block in blocks))

    # -- relay ---------------------------------------------------------------------------

    def relay(self, options: dict[str, Any]) -> None:
        aliases: list[str] = options["databases"] or list(settings.DATABASES)
        unknown = [alias for alias in aliases if alias not in settings.DATABASES]
        if unknown:
            raise CommandError(f"unknown database alias(es): {', '.join(unknown)}")
        if not conf.JOURNAL:
            raise CommandError('the journal is off (CACHESWEEPER["JOURNAL"] = False)')
        journaled = [alias for alias in aliases if journal.usable(alias)]
        if not journaled:
            raise CommandError(
                'no database has the journal table: run "manage.py migrate cachesweeper"'
            )
        if options["once"]:
            replayed = relay.tick(journaled, options["delay"])
            if purges.pending():
                purges.flush(options["timeout"])
            for alias in journaled:
                relay.settle(alias)
            left = sum(journal.pending(alias) for alias in journaled)
            self.stdout.write(f"Replayed {replayed} journaled sweep(s); {left} left")
            return
        self.stdout.write(f"Relaying the journal of {', '.join(journaled)} (Ctrl-C to stop)")
        listener = Listener()  # woken by the triggers' NOTIFY, if any
        try:
            while True:
                replayed = relay.tick(journaled, options["delay"])
                if replayed:
                    self.stdout.write(f"Replayed {replayed} journaled sweep(s)")
                listener.wait(options["interval"], threading.Event())
        except KeyboardInterrupt:
            pass
        finally:
            listener.close()

    # -- triggers ------------------------------------------------------------------------

    def triggers(self, options: dict[str, Any]) -> None:
        alias: str = options["database"]
        if alias not in settings.DATABASES:
            raise CommandError(f"unknown database alias: {alias}")
        if not conf.DATABASE_TRIGGERS:
            raise CommandError('database triggers are off (CACHESWEEPER["DATABASE_TRIGGERS"])')
        if not triggers.wanted(alias):
            raise CommandError(
                f"database {alias} gets no triggers: they need PostgreSQL, the journal on, "
                'and its table there ("manage.py migrate cachesweeper")'
            )
        if options["install"]:
            triggers.install(alias)
        for found in triggers.status(alias):
            self.stdout.write(f"{found.table}: {found.state}")


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
