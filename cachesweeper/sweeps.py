"""Sweeps: move the tokens of dependencies, after commit, and never lose one.

The explicit sweeps (``invalidate_*``) and :func:`sweep`, which the
receivers of registered models (:mod:`cachesweeper.registration`) call too.
Inside ``transaction.atomic()`` a sweep waits for the commit (so no reader
can cache pre-commit data under the new token; :mod:`cachesweeper.uncommitted`
lets the transaction see its own writes meanwhile) and is de-duplicated per
transaction; a rollback sweeps nothing. It is also written to the journal
(:mod:`cachesweeper.journal`) just before that transaction commits
(:mod:`cachesweeper.precommit`), so that a relay
(:mod:`cachesweeper.relay`) finishes it if this process cannot. A bump that
cannot reach the version cache is logged at error level, journaled, and
retried in the background (:mod:`cachesweeper.retries`); it never raises
into the code that saved the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from cachesweeper import fields as field_deps
from cachesweeper import (
    journal,
    precommit,
    retries,
    stamps,
    stats,
    tokens,
    triggers,
    uncommitted,
)
from cachesweeper.conf import conf
from cachesweeper.dependencies import (
    every_row_names,
    hierarchy_names,
    levels,
    model_names,
    name_with_pk,
    tag_name,
)
from cachesweeper.registry import registration_for, tracked_fields, urls_of
from cachesweeper.relay import relay

logger = logging.getLogger("cachesweeper")


# -- explicit sweeps -----------------------------------------------------------


def invalidate_cache_for(instance: models.Model, using: str | None = None) -> None:
    """Sweep one instance: content depending on it is rendered afresh, and the lists it
    is in (the field dependencies of its tracked values).

    ``using`` picks the token strategy: ``None`` for the model's own,
    ``"counter"``, or an attribute name such as ``"updated_at"`` (which is then
    set to now with one ``UPDATE``, as Rails' ``touch`` does, and the counter
    is bumped as well). The instance in memory keeps its old value: load it
    again to render it afresh.

    ``using="counter"`` on a model versioned by an attribute raises
    ``ValueError``: its fragments compare the attribute, which a counter bump
    does not move, so that sweep would silently leave them stale.
    """
    model = type(instance)
    strategy = using
    attribute = tokens.attribute_for(model)
    if strategy == tokens.COUNTER and attribute is not None:
        raise ValueError(
            f"cachesweeper: {model.__name__} is versioned by its {attribute!r} attribute, "
            "which a counter sweep does not move, so its fragments would stay stale; "
            f"call invalidate_cache_for({model.__name__.lower()}) without using= (it "
            f"updates {attribute}), or register {model.__name__} with using='counter'"
        )
    if strategy is not None and strategy != tokens.COUNTER:
        attribute = strategy
    database = instance._state.db or router.db_for_write(model)
    if attribute is not None:
        tokens.move_attribute(model, [instance.pk], attribute, database)
    registration = registration_for(model)
    urls = urls_of(instance, registration.purge_urls if registration else None)
    names = [*hierarchy_names(instance), *field_deps.swept(instance, created=False)]
    sweep(names, database=database, urls=urls)


def invalidate_model(model: type[models.Model]) -> None:
    """Sweep the model-level dependency (fragments on the class or a QuerySet of it).

    Every row of it too (``blog.article.*``): QuerySets on field dependencies
    are swept as well. Under multi-table inheritance the concrete parents'
    names too: their tables changed as well.
    """
    sweep([*model_names(model), *every_row_names(model)], database=router.db_for_write(model))


def invalidate_tag(*names: str) -> None:
    """Sweep named tags."""
    sweep([tag_name(name) for name in names])


def invalidate_queryset(queryset: models.QuerySet[Any]) -> None:
    """Sweep every instance ``queryset`` matches, their field dependencies, and their model.

    ``QuerySet.update()``, ``bulk_create()`` and ``bulk_update()`` send no
    signals; call this with the affected rows, in the same
    ``transaction.atomic()`` as the bulk write (the sweep then waits for the
    commit), and before an update that changes which rows the filter matches.
    An update that changes a tracked field (a foreign key, ``fields=``) moves
    rows between selections: call it before the update (the old values) and
    after (the new ones).

    For a model versioned by an attribute, the matched rows' attribute is
    moved on with one ``UPDATE`` (as ``touch`` does): their fragments compare
    that attribute, so a token bump alone would leave them stale.
    """
    model = queryset.model
    hierarchy = levels(model)
    # Each level's primary key (they differ only for a second parent), then the
    # tracked fields' values.
    tracked = [field.attname for field in tracked_fields(model)]
    keys = [level._meta.pk.name for level in hierarchy]
    rows = list(queryset.values_list(*keys, *tracked))
    attribute = tokens.attribute_for(model)
    if attribute is not None:
        database = queryset._db or router.db_for_write(model)  # type: ignore[attr-defined]
        tokens.move_attribute(model, [row[0] for row in rows], attribute, database)
    names = [name_with_pk(level, row[i]) for row in rows for i, level in enumerate(hierarchy)]
    names += field_deps.of_rows(model, [row[len(keys) :] for row in rows])
    sweep([*names, *model_names(model)], database=queryset.db)


def sweep(
    names: Iterable[str],
    database: str | None = None,
    urls: Iterable[str] = (),
    saved: models.Model | None = None,
) -> None:
    """Sweep ``names``: :func:`sweep_now`, or when the current transaction commits.

    Edges are told after the bump: purges of ``names`` and of the URL paths
    ``urls`` (for edges that purge by URL). ``saved`` is the instance whose
    save caused the sweep: it holds what was committed, so it is stamped as
    loaded after the bump. Inside a transaction the sweep is journaled in it
    (:mod:`cachesweeper.journal`).
    """
    names, urls = list(dict.fromkeys(names)), list(dict.fromkeys(urls))
    if not names and not urls:
        return
    if conf.JOURNAL:
        relay.start()  # every process that sweeps replays the journal too
    connection = transaction.get_connection(database)
    if connection.in_atomic_block:
        _defer(connection, names, urls, saved)
    else:
        armed = triggers.taken_key(connection)
        sweep_now(names, urls, database=connection.alias)
        if saved is not None:
            stamps.restamp(saved)
        if armed is not None:  # an autocommit ORM save's trigger row: its names, once
            relay.take_soon(connection.alias, armed, names)


def sweep_now(
    names: Sequence[str],
    urls: Sequence[str] = (),
    database: str | None = None,
    row: int | None = None,
) -> bool:
    """Give the names fresh tokens now, then purge them (and ``urls``) at the edges.

    Edges hear only of names whose bump landed: purged earlier, an edge would
    refetch the page from Django, which still serves the old entry, and keep
    it. A failed bump is retried; its purges (and the URLs of the sweep) are
    sent when it lands. Failures never reach the caller. Returns whether the
    bump landed.

    ``row`` is the sweep's journal row on ``database``: deleted once the edges
    took the purges, left for a relay when the bump failed. A failed bump
    without a row is journaled now, when ``database`` has a journal.
    """
    stats.swept(len(names))
    failed = retries.attempt(names) if names else []
    if failed:
        logger.error(
            "cachesweeper: the version cache did not take the sweep of %s; will retry",
            ", ".join(failed),
        )
        if database is not None:
            if row is None:
                row = journal.record(database, names, urls)
            else:
                relay.abandon(database, [row])
        retries.queue.add(failed, urls, journaled=row is not None)
        retries.landed(retries.without(names, failed), ())
        return False
    if database is None or row is None:
        retries.landed(names, urls)
        return True
    retries.landed(names, urls, done=relay.finisher(database, [row], names, urls))
    try:
        relay.settle_soon(database)
    except Exception:
        logger.exception("cachesweeper: could not delete finished sweeps from the journal")
    return True


class _Pending:
    """Names swept inside one transaction: journaled just before its commit, bumped once
    after it.
    """

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.names: dict[str, None] = {}
        self.urls: dict[str, None] = {}
        self.saved: list[models.Model] = []
        #: The journal row of this transaction (``None``: not journaled).
        self.row: int | None = None

    def waiting(self) -> bool:
        """Still registered for the commit: not run yet, not rolled back."""
        return any(item[1] is self for item in self.connection.run_on_commit)

    def journal(self) -> None:
        """Just before the commit: write the batch to the journal, one statement.

        With database triggers, the rows this transaction's triggers wrote are
        taken into it, to be bumped with ours, once.
        """
        if not self.waiting() or self.row is not None:
            return  # rolled back (the hook outlives it), or already written
        alias = self.connection.alias
        if triggers.active(self.connection) and journal.usable(alias):
            self.row, taken = triggers.write_taking(
                self.connection, list(self.names), list(self.urls)
            )
            self.names.update(dict.fromkeys(taken))
        elif journal.usable(alias):
            self.row = journal.write(self.connection, list(self.names), list(self.urls))

    def __call__(self) -> None:
        names, urls, self.names, self.urls = list(self.names), list(self.urls), {}, {}
        saved, self.saved = self.saved, []
        sweep_now(names, urls, database=self.connection.alias, row=self.row)
        for instance in saved:
            stamps.restamp(instance)


def _defer(
    connection: BaseDatabaseWrapper,
    names: Iterable[str],
    urls: Iterable[str],
    saved: models.Model | None = None,
) -> None:
    pending: _Pending | None = getattr(connection, "_cachesweeper_pending", None)
    # After a rollback (of the transaction or of the savepoint that
    # registered it) Django forgets the callback: start a new batch then.
    if pending is None or not pending.waiting():
        pending = _Pending(connection)
        connection._cachesweeper_pending = pending  # type: ignore[attr-defined]
        transaction.on_commit(pending, using=connection.alias)
        uncommitted.add(pending)
        if conf.JOURNAL:
            precommit.before_commit(connection, pending.journal)
    pending.names.update(dict.fromkeys(names))
    pending.urls.update(dict.fromkeys(urls))
    if saved is not None:
        pending.saved.append(saved)
