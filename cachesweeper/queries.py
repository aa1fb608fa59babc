"""One execute wrapper on every database connection, for what must see each query.

Django's documented hook (``connection.execute_wrapper``) is the only place
that sees every query, whoever builds it: the ORM, ``raw()``, a cursor.
:mod:`cachesweeper.stamps` notes when a query began, :mod:`cachesweeper.loads`
what a page's queries read. Each registers a *listener*, called with the
SQL, its parameters and the connection before the query runs; one wrapper
calls them all, so a query pays one extra call however many listen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

Listener = Callable[[str, Any, BaseDatabaseWrapper], None]

_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    """Call ``listener(sql, params, connection)`` before every query from now on."""
    if listener not in _listeners:
        _listeners.append(listener)
    for connection in connections.all(initialized_only=True):
        _watch(connection)


def _wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    connection = context["connection"]
    for listener in _listeners:
        listener(sql, params, connection)
    return execute(sql, params, many, context)


def _watch(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # First in the list: ``connection.execute_wrapper()`` pops the last one.
    if _listeners and _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _wrapper)


def _on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    _watch(connection)


connection_created.connect(_on_connection_created, dispatch_uid="cachesweeper.queries")
