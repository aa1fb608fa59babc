"""What a page's request read from the database: the dependencies nobody declared.

A page cached whole (``cache_page``, ``PageCacheMiddleware``, an edge) shows
whatever its view and templates loaded: the article, its author, the footer,
the latest posts. Fragments name their dependencies; a page would need every
one of them in ``tags=``. Instead, while a page renders, each query on the
table of a registered model is noted:

- a lookup of one row by primary key (``get(pk=…)``, a foreign key followed,
  ``.specific``) depends on that row: its instance name, at every level of
  inheritance the query reads;
- a query whose one condition is a tracked field equal to a value (a related
  manager, ``filter(article=a)``, its ``count()``) depends on that field
  dependency (:mod:`cachesweeper.fields`);
- any other query (a list, a count, a filter, a join) depends on the model of
  each registered table it reads: a row added, changed or removed there may
  change what it returns.

Past ``INSTANCE_LIMIT`` rows of one model, they collapse into the model's
name. The names join the page's frame with their current tokens, read once the
page has rendered; the request-start rule of :func:`cachesweeper.entries.save`
keeps a page from being stored when one of them was swept while it rendered.

Why the SQL and not the ORM: Django's execute wrapper is a documented hook that
sees every query (the ORM's, ``raw()``'s, a cursor's), where the ORM has no
hook for a QuerySet being evaluated. Django quotes every table it names, so a
registered table is found by its quoted name, and a lookup by primary key has
one shape on every backend: ``WHERE <table>.<pk> = %s``, then a row limit (a
tracked field: the same with its column). A query of another shape depends on
the model: never a missed sweep.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any, NamedTuple

from django.apps import apps
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from cachesweeper import collector, outages, registry, tokens
from cachesweeper.backends import backend
from cachesweeper.conf import conf
from cachesweeper.dependencies import (
    every_row_names,
    field_name,
    levels,
    model_names,
    names_for_pks,
)

logger = logging.getLogger("cachesweeper")

_tracked: ContextVar[Loads | None] = ContextVar("cachesweeper_loads", default=None)

#: The one shape of a lookup by primary key: the column compared, then a row limit.
_BY_KEY = re.compile(r"\sWHERE (\S+) = %s(?: LIMIT \d+| FETCH FIRST \d+ ROWS ONLY)?\s*$")


class Loads:
    """The rows and models one page's queries read."""

    __slots__ = ("fields", "models", "rows")

    def __init__(self) -> None:
        self.rows: dict[type[Model], dict[Any, None]] = {}
        self.models: dict[type[Model], None] = {}
        self.fields: dict[str, type[Model]] = {}  # field dependency -> its model

    def add_row(self, model: type[Model], pk: Any) -> None:
        rows = self.rows.setdefault(model, {})
        if len(rows) <= conf.INSTANCE_LIMIT:  # one past the limit says "too many"
            rows[pk] = None

    def names(self) -> list[str]:
        """The dependency names of what was read, rows past the limit as their model."""
        found: list[str] = []
        for model in self.models:
            found += model_names(model)
        for name, model in self.fields.items():
            if model not in self.models:
                found += [name, *every_row_names(model)]
        for model, rows in self.rows.items():
            if model in self.models:
                continue
            if len(rows) > conf.INSTANCE_LIMIT:
                logger.debug(
                    "cachesweeper: a page read over %d rows of %s: it depends on the model",
                    conf.INSTANCE_LIMIT,
                    model._meta.label,
                )
                found += model_names(model)
            else:
                found += names_for_pks(model, rows)
        return list(dict.fromkeys(found))

    def add(self, other: Loads) -> None:
        for model, rows in other.rows.items():
            for pk in rows:
                self.add_row(model, pk)
        self.models.update(other.models)
        self.fields.update(other.fields)


class tracking:  # used like a function: ``with tracking() as loads:``
    """Note what the queries inside read (when ``on``); an enclosing tracking learns it too.

    A class: the edge middleware enters it on every request, and a generator
    costs more.
    """

    __slots__ = ("loads", "on", "outer", "reset")

    def __init__(self, on: bool = True) -> None:
        self.on = on

    def __enter__(self) -> Loads:
        self.loads = Loads()
        if self.on:
            self.outer = _tracked.get()
            self.reset = _tracked.set(self.loads)
        return self.loads

    def __exit__(self, *exc: object) -> None:
        if self.on:
            _tracked.reset(self.reset)
            if self.outer is not None:
                self.outer.add(self.loads)


def report(loads: Loads, frame: collector.Frame) -> None:
    """Add what ``loads`` read to ``frame``, with current tokens when it stores content.

    The tokens are read after the data: a sweep in between has a sweep time
    after the request began, and the content is then not stored. A version
    cache that cannot be read leaves the tokens unknown: not stored either.
    """
    names = [name for name in loads.names() if name not in frame.tokens]
    if not names:
        return
    if not frame.wants_tokens:
        frame.add(dict.fromkeys(names))
        return
    found: dict[str, int | None] = dict.fromkeys(names)
    try:
        cache = backend(conf.VERSION_CACHE)
        counters = tokens.read_counters(cache, names)
        missing = [name for name in names if name not in counters]
        if missing:
            counters.update(tokens.create_counters(cache, missing))
        found.update(counters)
    except Exception as error:
        outages.report(conf.VERSION_CACHE, "the page is not stored", error)
    frame.add(found)


def note(sql: str, params: Any, connection: BaseDatabaseWrapper) -> None:
    """A query is about to run: note what it reads, when a page is being tracked."""
    loads = _tracked.get()
    if loads is None:
        return
    index = _index(connection)
    row_model = pk = field_model = None
    match = _BY_KEY.search(sql)
    if match is not None and params:
        column = match.group(1)
        row_model = index.keys.get(column)
        field = index.fields.get(column)
        try:
            if row_model is not None:
                pk = row_model._meta.pk.to_python(params[-1])
            elif field is not None:
                field_model = index.tables[column.rsplit(".", 1)[0]]
                loads.fields[field_name(field, params[-1])] = field_model
        except Exception:  # an odd parameter: depend on the model instead
            row_model = field_model = None
    for quoted, model in index.tables.items():
        if quoted not in sql or model is field_model:
            continue
        if row_model is not None and (model in levels(row_model) or row_model in levels(model)):
            loads.add_row(model, pk)  # the same row, at another level of inheritance
        else:
            loads.models[model] = None


class _Index(NamedTuple):
    """Registered tables by their quoted names; their quoted primary key and tracked
    columns (``"table"."column"``)."""

    tables: dict[str, type[Model]]
    keys: dict[str, type[Model]]
    fields: dict[str, Field[Any, Any]]


_indexes: dict[tuple[str, int], _Index] = {}


def _index(connection: BaseDatabaseWrapper) -> _Index:
    key = (connection.vendor, registry.changes())
    found = _indexes.get(key)
    if found is None:
        quote = connection.ops.quote_name
        tables: dict[str, type[Model]] = {}
        keys: dict[str, type[Model]] = {}
        fields: dict[str, Field[Any, Any]] = {}
        for model in apps.get_models():
            meta = model._meta
            if meta.proxy or registry.registration_for(model) is None:
                continue
            table = quote(meta.db_table)
            tables[table] = model
            keys[f"{table}.{quote(meta.pk.column)}"] = model
            for field in registry.tracked_fields(model):
                if field.model._meta.db_table == meta.db_table:  # a column of this table
                    fields[f"{table}.{quote(str(field.column))}"] = field
        _indexes.clear()
        found = _indexes[key] = _Index(tables, keys, fields)
    return found
