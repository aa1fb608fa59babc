"""The journal: sweeps written to the database, so that no process can lose one.

A sweep made in a transaction is written to the ``cachesweeper_journal``
table of that transaction's database (one ``INSERT``, just before the
commit: :mod:`cachesweeper.precommit`), so it commits or rolls back with
the data. After the commit the process bumps and purges as before, then
deletes the row. What is left in the journal, a dead process's sweep, a
bump the version cache did not take, a purge an edge did not take, is
replayed by a relay (:mod:`cachesweeper.relay`).

This module only reads and writes rows; it bumps and purges nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from cachesweeper.conf import conf

if TYPE_CHECKING:
    from cachesweeper.models import JournaledSweep

logger = logging.getLogger("cachesweeper")

TABLE = "cachesweeper_journal"
#: The migration that creates :data:`TABLE`.
MIGRATION = ("cachesweeper", "0001_journal")
#: Seconds before a database found without the table is looked at again.
RECHECK = 10.0


@dataclass
class Row:
    """A claimed journal row, decoded."""

    id: int
    names: list[str]
    urls: list[str]
    bumped: bool


def _model() -> type[JournaledSweep]:
    # Imported late: ``cachesweeper.models`` imports the sweeps, which import this module.
    from cachesweeper.models import JournaledSweep

    return JournaledSweep


_lock = threading.Lock()
_tables: dict[str, tuple[bool, float]] = {}  # alias -> (has the table, when looked)


def usable(alias: str) -> bool:
    """Whether sweeps on ``alias`` are journaled: ``JOURNAL`` is on and the table is there.

    The routers decide where the table may live; whether it was migrated is
    looked up once (again every :data:`RECHECK` seconds while it is missing:
    check ``cachesweeper.W006`` says to run ``migrate``).
    """
    if not conf.JOURNAL:
        return False
    with _lock:
        known = _tables.get(alias)
    now = time.monotonic()
    if known is not None and (known[0] or now - known[1] < RECHECK):
        return known[0]
    found = allowed(alias) and has_table(alias)
    with _lock:
        _tables[alias] = (found, now)
    if not found and known is None and allowed(alias):
        logger.warning(
            "cachesweeper: no journal table on database %s: its sweeps are kept in memory "
            'only; run "manage.py migrate cachesweeper --database %s"',
            alias,
            alias,
        )
    return found


def allowed(alias: str) -> bool:
    """Whether ``alias`` may hold the journal: the app is installed and the routers agree."""
    return apps.is_installed("cachesweeper") and bool(router.allow_migrate_model(alias, _model()))


def has_table(alias: str) -> bool:
    """Whether ``alias`` has the journal's table (``migrate`` made it)."""
    try:
        with connections[alias].cursor() as cursor:
            return TABLE in connections[alias].introspection.table_names(cursor)
    except Exception:
        logger.debug("cachesweeper: could not look for the journal on %s", alias, exc_info=True)
        return False


@receiver(post_migrate)
def _migrated(**kwargs: Any) -> None:
    with _lock:
        _tables.clear()


@receiver(setting_changed)
def _reconfigured(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DATABASES", "DATABASE_ROUTERS", "INSTALLED_APPS", "CACHESWEEPER"):
        with _lock:
            _tables.clear()


def in_memory(alias: str) -> bool:
    """An in-memory SQLite database: no other process sees its journal."""
    connection = connections[alias]
    return connection.vendor == "sqlite" and connection.is_in_memory_db()  # type: ignore[attr-defined]


def _encode(values: Iterable[str]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


def write(
    connection: BaseDatabaseWrapper,
    names: Sequence[str],
    urls: Sequence[str],
    bumped: bool = False,
) -> int:
    """Journal a sweep in ``connection``'s transaction; return the row's id (one ``INSERT``)."""
    rows = _model()._base_manager.using(connection.alias)
    row = rows.create(
        names=_encode(names), urls=_encode(urls), created_at=time.time(), bumped=bumped
    )
    return int(row.pk)


def record(
    alias: str, names: Sequence[str], urls: Sequence[str], bumped: bool = False
) -> int | None:
    """Journal a sweep outside any transaction; ``None`` if it cannot be.

    Its bump failed, or it landed and only the purges are left (``bumped``).
    """
    if not usable(alias):
        return None
    try:
        with transaction.atomic(using=alias):
            return write(connections[alias], names, urls, bumped)
    except Exception:
        logger.exception("cachesweeper: could not journal the sweep of %s", ", ".join(names))
        return None


def forget(alias: str, ids: Iterable[int]) -> None:
    """The sweeps of rows ``ids`` are done: delete them (one ``DELETE``)."""
    ids = list(ids)
    if ids:
        # A raw DELETE: the rows have no relations nor signals to collect first.
        rows = _model()._base_manager.using(alias).filter(pk__in=ids)
        rows._raw_delete(alias)


def hold(alias: str, ids: Iterable[int], seconds: float, bumped: bool = False) -> None:
    """Claim rows ``ids`` for ``seconds`` more: this process is still on them.

    ``bumped``: their bumps landed, so a relay that takes them over only purges.
    """
    ids = list(ids)
    if ids:
        values: dict[str, Any] = {"claimed_until": time.time() + seconds}
        if bumped:
            values["bumped"] = True
        _model()._base_manager.using(alias).filter(pk__in=ids).update(**values)


def release(alias: str, ids: Iterable[int]) -> None:
    """Give up the claim on rows ``ids``: any relay may replay them at once."""
    ids = list(ids)
    if ids:
        _model()._base_manager.using(alias).filter(pk__in=ids).update(claimed_until=0.0)


def claim(alias: str, older_than: float, limit: int, seconds: float) -> list[Row]:
    """Claim up to ``limit`` rows older than ``older_than`` seconds, for ``seconds``.

    No two claims get the same row while a claim runs: the ``UPDATE`` only
    takes rows whose claim has run out, and on PostgreSQL the candidate rows
    are picked with ``FOR UPDATE SKIP LOCKED``, so concurrent relays pass each
    other instead of waiting (or deadlocking).
    """
    now = time.time()
    token = uuid.uuid4().hex
    rows = _model()._base_manager.using(alias)
    connection = connections[alias]
    skip_locked = connection.features.has_select_for_update_skip_locked
    # SQLite: each statement commits alone, and the ``UPDATE`` is what claims.
    with transaction.atomic(using=alias) if skip_locked else contextlib.nullcontext():
        candidates = rows.filter(created_at__lte=now - older_than, claimed_until__lt=now)
        if skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        rows.filter(pk__in=ids, claimed_until__lt=now).update(
            claimed_until=now + seconds, claimed_by=token
        )
    return [
        Row(row.pk, json.loads(row.names), json.loads(row.urls), row.bumped)
        for row in rows.filter(claimed_by=token).order_by("pk")
    ]


def pending(alias: str = DEFAULT_DB_ALIAS) -> int:
    """Rows in the journal of ``alias``: sweeps not finished yet."""
    return int(_model()._base_manager.using(alias).count())
