"""When model instances were loaded: the start of their data, outside a request.

A fragment stores its content against the tokens it read. With counter
tokens, an instance loaded *before* a concurrent write committed and swept
would be stored under the new token while it shows the old data. Inside a
request, the request's start bounds when data was loaded; outside one (a
task, a command, a shell) each instance of a registered model carries the
time its query began, and content is not stored when a dependency was swept
after that.

The time is the start of the query, not the moment the instance was built:
the database snapshot is taken when the query runs, and a thread switch may
come between the two. It is noted before every query (:mod:`cachesweeper.queries`)
and read by a ``post_init`` receiver.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet
from django.db.models.signals import post_init

from cachesweeper import queries

LOADED_AT = "_cachesweeper_loaded_at"

_query_started: ContextVar[float | None] = ContextVar("cachesweeper_query", default=None)


def loaded_at(obj: Any) -> float | None:
    """When the oldest instance in ``obj`` was loaded, if known.

    A QuerySet counts only once evaluated: a lazy one loads its rows inside
    the fragment, after the tokens were read.
    """
    if isinstance(obj, Model):
        moment: float | None = obj.__dict__.get(LOADED_AT)
        return moment
    if isinstance(obj, QuerySet):
        cached = obj._result_cache
        return None if cached is None else loaded_at(cached)
    if isinstance(obj, (list, tuple)):
        moments = [moment for item in obj if (moment := loaded_at(item)) is not None]
        return min(moments) if moments else None
    return None


def stamp_instances_of(model: type[Model]) -> None:
    """Stamp every instance of ``model`` with the start of the query that loaded it."""
    uid = f"cachesweeper.loaded_at.{model._meta.label}"
    post_init.connect(_on_init, sender=model, weak=False, dispatch_uid=uid)
    queries.listen(_note_start)


def restamp(instance: Model) -> None:
    """``instance`` holds what its own save committed: it is current as of now."""
    if LOADED_AT in instance.__dict__:
        instance.__dict__[LOADED_AT] = time.time()


def _on_init(sender: Any, instance: Model, **kwargs: Any) -> None:
    # An instance built in code, not loaded, gets the last query's start: earlier
    # than needed, never later.
    started = _query_started.get()
    instance.__dict__[LOADED_AT] = time.time() if started is None else started


def _note_start(sql: str, params: Any, connection: BaseDatabaseWrapper) -> None:
    _query_started.set(time.time())
