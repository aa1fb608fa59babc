"""Database triggers: writes from anywhere sweep, on PostgreSQL.

With ``CACHESWEEPER["DATABASE_TRIGGERS"] = True``, ``migrate`` installs
statement-level ``AFTER INSERT / UPDATE / DELETE`` triggers on the tables of
registered models. Each writes the dependency names of the changed rows,
spelled as :mod:`cachesweeper.dependencies` spells them, into the journal in
the writing transaction; at the commit, ``NOTIFY cachesweeper`` wakes the
relay (:data:`NOTIFY_SQL`), which listens and replays the row moments later. So ``update()``,
``bulk_update``, ``bulk_create``, a queryset's ``delete()``, raw SQL and
another program's writes sweep too. A rollback takes the row with it.

What a trigger names, old and new rows alike:

* the row's instance name at each level sharing its primary key (multi-table
  inheritance), for the table's model and its registered children, and
  their model names;
* tracked fields (:mod:`cachesweeper.fields`) of integer, text, UUID and
  boolean types as ``app.model.field=value``; other types sweep
  ``app.model.*`` instead (their text in SQL may differ from Python's);
* lone forward foreign-key ``touch`` targets (and their own, a few levels
  deep, read with a subquery), their model names and static tags; other
  touch paths, callable tags and a target's field dependencies fall back to
  the target's model name and ``app.model.*``. Instance fragments of a
  target reached through such a path are swept by ORM saves only.

A trigger's row has no process of its own waiting to bump it: it is written
with ``created_at = 0``, due at once for any relay. Its ``claimed_by`` holds
``x<transaction id>`` so that an ORM sweep in the same transaction takes it
in (:func:`write_taking`): one bump, not two. An autocommit ORM save marks
its session first (:func:`arm`), so its row waits for this process instead.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from cachesweeper import journal, touching
from cachesweeper.conf import conf
from cachesweeper.dependencies import model_name, model_names, name_of, pk_levels
from cachesweeper.registry import Registration, registration_for, tracked_fields

#: The channel triggers ``NOTIFY`` and the relay listens on.
CHANNEL = "cachesweeper"
#: Prefix of every function this module installs (and may drop).
PREFIX = "cachesweeper_"
#: The session setting an ORM save sets before an autocommit write (:func:`arm`).
MARKER = "cachesweeper.orm"
#: How deep lone foreign-key touches are followed in SQL.
DEPTH = 4

_INTEGERS = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
    }
)
_TEXTS = frozenset({"CharField", "TextField", "SlugField", "EmailField", "URLField", "UUIDField"})

#: ``cachesweeper.dependencies.encode`` in SQL: UTF-8 bytes outside ``A-Za-z0-9._~:/-``
#: percent-encoded (upper-case hex, as ``urllib.parse.quote``), the empty text as ``%``.
ENCODE_SQL = """
CREATE OR REPLACE FUNCTION cachesweeper_encode(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $cs$
  SELECT CASE
    WHEN value = '' THEN '%'
    WHEN value ~ '^[A-Za-z0-9._~:/-]+$' THEN value
    ELSE (
      SELECT string_agg(
        CASE WHEN byte < 128 AND chr(byte) ~ '^[A-Za-z0-9._~:/-]$' THEN chr(byte)
             ELSE '%' || upper(lpad(to_hex(byte), 2, '0')) END, '' ORDER BY i)
      FROM (
        SELECT i, get_byte(convert_to(value, 'UTF8'), i) AS byte
        FROM generate_series(0, octet_length(convert_to(value, 'UTF8')) - 1) AS i
      ) AS bytes)
  END
$cs$;
"""


#: Wakes the relays at the commit, for the trigger rows still there then: a row the
#: ORM's sweep took in (:func:`write_taking`), or one an ORM save armed (due later),
#: wakes nobody. A deferred constraint trigger runs at the commit, and only for rows
#: due at once (``created_at = 0``); the notification is sent if the row survived.
NOTIFY_SQL = [
    f"""
CREATE OR REPLACE FUNCTION cachesweeper_notify() RETURNS trigger
LANGUAGE plpgsql AS $cs$
BEGIN
  IF EXISTS (SELECT 1 FROM {journal.TABLE} WHERE id = NEW.id) THEN
    PERFORM pg_notify('{CHANNEL}', '');
  END IF;
  RETURN NULL;
END
$cs$;
""",
    "COMMENT ON FUNCTION cachesweeper_notify() IS 'cachesweeper notify'",
    "COMMENT ON FUNCTION cachesweeper_encode(text) IS 'cachesweeper encode'",
    f"DROP TRIGGER IF EXISTS cachesweeper_notify ON {journal.TABLE}",
    f"CREATE CONSTRAINT TRIGGER cachesweeper_notify AFTER INSERT ON {journal.TABLE} "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.created_at = 0) "
    "EXECUTE FUNCTION cachesweeper_notify()",
    f"""
CREATE OR REPLACE FUNCTION cachesweeper_disarm() RETURNS trigger
LANGUAGE plpgsql AS $cs$
BEGIN
  IF 'p' || current_setting('{MARKER}', true) = NEW.claimed_by THEN
    PERFORM set_config('{MARKER}', '', false);
  END IF;
  RETURN NULL;
END
$cs$;
""",
    "COMMENT ON FUNCTION cachesweeper_disarm() IS 'cachesweeper disarm'",
    f"DROP TRIGGER IF EXISTS cachesweeper_disarm ON {journal.TABLE}",
    f"CREATE CONSTRAINT TRIGGER cachesweeper_disarm AFTER INSERT ON {journal.TABLE} "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.claimed_by LIKE 'p%') "
    "EXECUTE FUNCTION cachesweeper_disarm()",
]


@dataclass
class Table:
    """One table that gets a trigger, and what its rows name."""

    model: type[models.Model]
    #: SQL expressions over a row ``r``, each a name (or NULL).
    row_names: list[str] = field(default_factory=list)
    #: Names every write of the table sweeps.
    constant: list[str] = field(default_factory=list)
    #: What a write sweeps when the row names cannot be read (``app.model.*``).
    fallback: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.model._meta.db_table)

    @property
    def function(self) -> str:
        """The trigger function's name: readable, within PostgreSQL's 63 bytes."""
        name = f"{PREFIX}{self.name}"
        if len(name) > 55:
            name = f"{name[:46]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        return name

    def function_sql(self) -> str:
        expressions = ", ".join(dict.fromkeys(self.row_names)) or "NULL::text"
        constant = ", ".join(_literal(name) for name in dict.fromkeys(self.constant))
        fallback = ", ".join(_literal(name) for name in dict.fromkeys(self.fallback))
        collect = (
            "SELECT array_agg(DISTINCT n) INTO found FROM {rows} AS r, "
            f"LATERAL unnest(ARRAY[{expressions}]::text[]) AS n WHERE n IS NOT NULL"
        )
        both = "(SELECT * FROM cachesweeper_old UNION ALL SELECT * FROM cachesweeper_new)"
        return f"""
CREATE OR REPLACE FUNCTION {_quote(self.function)}() RETURNS trigger
LANGUAGE plpgsql AS $cs$
DECLARE found text[];
BEGIN
  BEGIN
    IF TG_OP = 'INSERT' THEN {collect.format(rows="cachesweeper_new")};
    ELSIF TG_OP = 'DELETE' THEN {collect.format(rows="cachesweeper_old")};
    ELSE {collect.format(rows=both)};
    END IF;
  EXCEPTION WHEN OTHERS THEN
    -- The table no longer has what this function names (a migration is running and
    -- post_migrate has not replaced it yet): sweep the models, never fail the write.
    found := ARRAY[{fallback}]::text[];
  END;
  IF found IS NULL THEN
    RETURN NULL;  -- no row changed
  END IF;
  found := coalesce(found, ARRAY[]::text[]) || ARRAY[{constant}]::text[];
  IF coalesce(current_setting('{MARKER}', true), '') <> '' THEN  -- an ORM save: its process
    INSERT INTO {journal.TABLE} (names, urls, created_at, claimed_until, claimed_by, bumped)
    VALUES (array_to_json(found)::text, '[]', extract(epoch FROM clock_timestamp()), 0,
            'p' || current_setting('{MARKER}'), false);
  ELSE
    INSERT INTO {journal.TABLE} (names, urls, created_at, claimed_until, claimed_by, bumped)
    VALUES (array_to_json(found)::text, '[]', 0, 0, 'x' || txid_current()::text, false);
  END IF;
  RETURN NULL;
END
$cs$;
"""

    def version(self) -> str:
        """What the installed trigger must match to be current: a digest of its SQL."""
        return hashlib.sha256(self.function_sql().encode()).hexdigest()[:16]

    def install_sql(self) -> list[str]:
        table, function = _quote(self.name), _quote(self.function)
        statements = [
            self.function_sql(),
            f"COMMENT ON FUNCTION {function}() IS 'cachesweeper {self.version()}'",
        ]
        for event, referencing in (
            ("INSERT", "NEW TABLE AS cachesweeper_new"),
            ("UPDATE", "OLD TABLE AS cachesweeper_old NEW TABLE AS cachesweeper_new"),
            ("DELETE", "OLD TABLE AS cachesweeper_old"),
        ):
            trigger = _quote(f"cachesweeper_{event.lower()}")
            statements += [
                f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
                f"CREATE TRIGGER {trigger} AFTER {event} ON {table} REFERENCING {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            ]
        return statements


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _column(field: models.Field[Any, Any]) -> str:
    return _quote(str(field.column))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _text(field: models.Field[Any, Any], column: str) -> str | None:
    """SQL spelling ``column`` (of ``field``) as ``dependencies`` spells values, or None."""
    target = field.target_field if field.is_relation else field  # type: ignore[attr-defined]
    kind = target.get_internal_type()
    if kind in _INTEGERS:
        return f"{column}::text"
    if kind in _TEXTS:
        return f"cachesweeper_encode({column}::text)"
    if kind == "BooleanField":
        return f"CASE WHEN {column} THEN 'True' WHEN NOT {column} THEN 'False' END"
    return None


def covered() -> dict[type[models.Model], Registration]:
    """Concrete, managed models whose writes sweep: registered, or a registered proxy's."""
    found: dict[type[models.Model], Registration] = {}
    for model in apps.get_models():
        registration = registration_for(model)
        concrete = model._meta.concrete_model
        if registration is None or concrete is None or not concrete._meta.managed:
            continue
        if not model._meta.proxy or concrete not in found:
            found[concrete] = registration
    return found


def tables() -> list[Table]:
    """Every table that gets a trigger, with what its rows name."""
    models_ = covered()
    result: dict[type[models.Model], Table] = {}
    for model, registration in models_.items():
        chain = pk_levels(model)
        for level in chain:
            table = result.setdefault(level, Table(level))
            pk: models.Field[Any, Any] = level._meta.pk
            column = f"r.{_column(pk)}"
            pk_text = _text(pk, column) or f"cachesweeper_encode({column}::text)"
            for named in chain:
                table.row_names.append(f"{_literal(model_name(named) + '.')} || {pk_text}")
            table.constant += model_names(model)
            table.fallback += [f"{name}.*" for name in model_names(model)]
            local = {f.column for f in level._meta.local_concrete_fields}
            for tracked in tracked_fields(model):
                if tracked.column in local:
                    _field_names(table, tracked)
            for path in registration.touch:
                if touching.is_foreign_key(model, path):
                    key: models.ForeignKey[Any, Any] = model._meta.get_field(path)  # type: ignore[assignment]
                    if key.column in local:
                        _touch_names(table, key, f"r.{_column(key)}", DEPTH)
                elif level is chain[0]:
                    target = touching.check(model, path).target
                    table.constant += _fallback(target)
    return list(result.values())


def here(alias: str) -> list[Table]:
    """The tables of :func:`tables` that the routers put on database ``alias``."""
    return [table for table in tables() if router.allow_migrate_model(alias, table.model)]


def _field_names(table: Table, tracked: models.Field[Any, Any], column: str = "") -> None:
    """``tracked``'s field dependency for the value ``column`` holds (default: the row's)."""
    owner = tracked.model._meta.concrete_model or tracked.model
    value = _text(tracked, column or f"r.{_column(tracked)}")
    if value is None:
        table.constant += [f"{model_name(owner)}.*"]
        return
    prefix = _literal(f"{model_name(owner)}.{tracked.name}=")
    table.row_names.append(f"{prefix} || coalesce({value}, '')")


def _fallback(target: type[models.Model]) -> list[str]:
    return [*model_names(target), *(f"{name}.*" for name in model_names(target))]


def _touch_names(table: Table, key: models.ForeignKey[Any, Any], value: str, depth: int) -> None:
    """Names of the row ``value`` (an SQL expression) of ``key``'s target, and its own touches."""
    target: type[models.Model] = key.related_model
    registration = registration_for(target)
    by_pk = key.target_field.primary_key
    if not by_pk or depth == 0:
        table.constant += _fallback(target)
        return
    text = _text(key, value)
    if text is None:
        table.constant += _fallback(target)
        return
    for level in pk_levels(target):
        table.row_names.append(f"{_literal(model_name(level) + '.')} || {text}")
    table.constant += model_names(target)
    if registration is None:
        return
    target_table = _quote(target._meta.db_table)
    target_pk = _column(target._meta.pk)
    local = {f.column for f in target._meta.local_concrete_fields}
    for tracked in tracked_fields(target):  # the lists the target is in show it
        if tracked.column not in local:
            table.constant += [f"{name}.*" for name in model_names(target)]
            continue
        lookup = (
            f"(SELECT t.{_column(tracked)} FROM {target_table} AS t WHERE t.{target_pk} = {value})"
        )
        _field_names(table, tracked, lookup)
    if registration.tags is not None:
        if callable(registration.tags):
            table.constant += _fallback(target)
        else:
            table.constant += [name_of(tag) for tag in registration.tags]
    target_table = _quote(target._meta.db_table)
    target_pk = _column(target._meta.pk)
    for path in registration.touch:
        if touching.is_foreign_key(target, path):
            nested: models.ForeignKey[Any, Any] = target._meta.get_field(path)  # type: ignore[assignment]
            column = _column(nested)
            lookup = f"(SELECT t.{column} FROM {target_table} AS t WHERE t.{target_pk} = {value})"
            _touch_names(table, nested, lookup, depth - 1)
        else:
            table.constant += _fallback(touching.check(target, path).target)


# -- where triggers may go --------------------------------------------------------------


def wanted(alias: str) -> bool:
    """Whether ``alias`` gets triggers: the setting is on, it is PostgreSQL, with a journal."""
    return (
        conf.DATABASE_TRIGGERS
        and conf.JOURNAL
        and connections[alias].vendor == "postgresql"
        and journal.allowed(alias)
    )


def install(alias: str) -> list[str]:
    """Install (or replace) every trigger on ``alias``; the tables that got one."""
    connection = connections[alias]
    done = []
    with connection.cursor() as cursor:
        cursor.execute(ENCODE_SQL)
        for statement in NOTIFY_SQL:
            cursor.execute(statement)
        for table in here(alias):
            for statement in table.install_sql():
                cursor.execute(statement)
            done.append(table.name)
    return done


def uninstall(alias: str) -> None:
    """Drop every function (and so every trigger) this module installed on ``alias``."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc AS p "
            "WHERE obj_description(p.oid, 'pg_proc') LIKE 'cachesweeper %%'"
        )
        for (function,) in cursor.fetchall():
            cursor.execute(f"DROP FUNCTION IF EXISTS {function} CASCADE")


@dataclass
class Status:
    """One registered table's trigger, as found in the database."""

    table: str
    state: str  # "current", "out of date" or "missing"


def status(alias: str) -> list[Status]:
    """Per registered table: whether its trigger is installed and matches the models now."""
    connection = connections[alias]
    found: list[Status] = []
    with connection.cursor() as cursor:
        for table in here(alias):
            cursor.execute(
                "SELECT obj_description(p.oid, 'pg_proc'), "
                "(SELECT count(*) FROM pg_trigger AS t WHERE t.tgfoid = p.oid "
                "AND t.tgrelid = to_regclass(%s)) FROM pg_proc AS p WHERE p.proname = %s",
                [_quote(table.name), table.function],
            )
            row = cursor.fetchone()
            if row is None or row[1] < 3:
                state = "missing"
            elif row[0] == f"cachesweeper {table.version()}":
                state = "current"
            else:
                state = "out of date"
            found.append(Status(table.name, state))
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname IN "
            "('cachesweeper_notify', 'cachesweeper_disarm') AND tgrelid = to_regclass(%s)",
            [journal.TABLE],
        )
        row = cursor.fetchone()
        count = row[0] if row is not None else 0
        state = "current" if count == 2 else "out of date" if count else "missing"
        found.append(Status(f"{journal.TABLE} (at commit: NOTIFY, clear the marker)", state))
    return found


@receiver(post_migrate)
def _migrated(using: str, app_config: Any = None, **kwargs: Any) -> None:
    """After ``migrate``: install the triggers, or drop them when the setting is off.

    Once per ``migrate`` (the signal comes once per app: ours), after every migration.
    """
    if app_config is not None and app_config.label != "cachesweeper":
        return
    if connections[using].vendor != "postgresql" or not journal.has_table(using):
        return
    if wanted(using):
        install(using)
    else:
        uninstall(using)


# -- one bump for an ORM save ----------------------------------------------------------


def active(connection: BaseDatabaseWrapper) -> bool:
    """Whether writes on ``connection`` may fire cachesweeper triggers."""
    return conf.DATABASE_TRIGGERS and connection.vendor == "postgresql"


def arm(connection: BaseDatabaseWrapper) -> None:
    """Before an ORM write outside a transaction: its trigger row waits for this process.

    Django sends ``pre_save`` before it opens a transaction, and commits the
    write before ``post_save``: no transaction-local marker can reach it. So
    the marker is a session setting holding a fresh key; the trigger writes
    the row as an ordinary journal row of this process (``p<key>``, due after
    ``RELAY_DELAY``) instead of one due at once, and a deferred trigger on the
    journal clears the marker at the write's commit. The sweep that follows
    hands the key to the relay thread (:func:`taken_key`), which takes the row
    off the request's path. If the write fails, the marker stays until the
    next ORM save sets a new one: writes meanwhile are journaled all the
    same, only replayed ``RELAY_DELAY`` later — delayed, never lost.
    """
    if active(connection) and not connection.in_atomic_block:
        key = secrets.token_hex(8)
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, false)", [MARKER, key])
        connection._cachesweeper_armed = key  # type: ignore[attr-defined]


def taken_key(connection: BaseDatabaseWrapper) -> str | None:
    """The key an autocommit ORM save armed on ``connection`` (:func:`arm`), once; no query.

    Its trigger rows are ``p<key>``: :func:`take` removes them, with their names.
    """
    key: str | None = getattr(connection, "_cachesweeper_armed", None)
    connection._cachesweeper_armed = None  # type: ignore[attr-defined]
    return key


def take(connection: BaseDatabaseWrapper, keys: list[str]) -> list[tuple[str, list[str]]]:
    """Delete the trigger rows of the armed saves ``keys``: each row's key and names."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {journal.TABLE} WHERE claimed_until = 0 AND claimed_by = ANY(%s) "
            "RETURNING claimed_by, names",
            [[f"p{key}" for key in keys]],
        )
        return [(owner[1:], json.loads(names)) for owner, names in cursor.fetchall()]


_TAKEN = (
    f"WITH taken AS (DELETE FROM {journal.TABLE} WHERE claimed_until = 0 AND claimed_by IN "
    "('x' || txid_current()::text, 'p' || current_setting(%s, true)) RETURNING names), "
    "merged AS (SELECT coalesce(json_agg(DISTINCT n), '[]'::json)::text AS names FROM ("
    "SELECT json_array_elements_text(%s::json) AS n "
    "UNION SELECT json_array_elements_text(taken.names::json) FROM taken) AS s) "
)


def write_taking(
    connection: BaseDatabaseWrapper, names: list[str], urls: list[str]
) -> tuple[int, list[str]]:
    """Journal a transaction's sweep, taking its triggers' rows in: one statement.

    Why: a save of a registered model fires its table's trigger *and* its
    signals. The signals' sweep is journaled in the same transaction, just
    before its commit; taking the trigger's rows into it leaves one row,
    bumped once after the commit by this process, with every write the
    transaction made. A transaction-local marker set before the write (``SET
    LOCAL``) was the other way, but it would also silence the trigger for
    every later write in the transaction (an ``update()`` after a save) and
    cannot reach an autocommit save (see :func:`arm`).

    ``journal.write`` and the taking at once: the row holds our names and
    every name this transaction's triggers (and an armed session's) journaled;
    this returns its id and those names.
    """
    encoded = json.dumps(names, separators=(",", ":"))
    urls_text = json.dumps(urls, separators=(",", ":"))
    with connection.cursor() as cursor:
        cursor.execute(
            _TAKEN + f"INSERT INTO {journal.TABLE} "
            "(names, urls, created_at, claimed_until, claimed_by, bumped) "
            "SELECT merged.names, %s, %s, 0, '', false FROM merged RETURNING id, names",
            [MARKER, encoded, urls_text, time.time()],
        )
        found = cursor.fetchone()
    return int(found[0]), list(json.loads(found[1]))
