"""Just before a commit: the hook Django does not have.

A transaction's sweep is journaled in that transaction, so that it commits or
rolls back with the data (:mod:`cachesweeper.journal`). Written at each save,
that costs a statement per save, and a hundred saves rewrite a growing row a
hundred times. Written once, just before ``COMMIT``, it costs one statement per
transaction. ``transaction.on_commit`` runs too late for that, so the
connection's ``commit()`` (which the outermost ``atomic()`` block and
``transaction.commit()`` call) is wrapped, once per connection object, to run
the hooks first; its ``rollback()``, to forget them.

A hook that fails with a database error fails the commit: ``atomic()`` rolls
back, so data never commits without its journal row. Any other error is
logged and the commit goes on; the sweep itself still runs after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("cachesweeper")

_HOOKS = "_cachesweeper_before_commit"


def before_commit(connection: BaseDatabaseWrapper, hook: Callable[[], None]) -> None:
    """Call ``hook`` just before ``connection``'s transaction commits; a rollback drops it.

    A savepoint's rollback does not: the hook must check that what it writes
    still belongs to the committing transaction (a sweep does: its batch is
    still waiting for the commit).
    """
    hooks: list[Callable[[], None]] | None = connection.__dict__.get(_HOOKS)
    if hooks is None:
        hooks = connection.__dict__[_HOOKS] = []
        commit, rollback = connection.commit, connection.rollback

        def committing() -> None:
            waiting = list(hooks)
            hooks.clear()
            for each in waiting:
                try:
                    each()
                except DatabaseError:
                    raise
                except Exception:
                    logger.exception("cachesweeper: a hook before the commit failed")
            commit()

        def rolling_back() -> None:
            hooks.clear()  # else a test suite's TestCases, never committed, pile them up
            rollback()

        connection.commit = committing  # type: ignore[method-assign]
        connection.rollback = rolling_back  # type: ignore[method-assign]
    hooks.append(hook)
