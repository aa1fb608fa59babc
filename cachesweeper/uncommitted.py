"""Sweeps waiting for their transaction's commit, as that transaction sees them.

A sweep inside ``transaction.atomic()`` waits for the commit, so that no
other reader caches data from before the commit under the new token. Until
then, though, the writing transaction itself would read the old entry and
show its own write as if it had not happened: a view under
``ATOMIC_REQUESTS`` that saves and then renders, and every test written with
Django's ``TestCase``, where the commit never comes.

So reads made where such a sweep waits render the swept dependencies fresh
and store nothing (the data is not committed, and may never be). A rollback
forgets the sweep, and the old entries are right again.

The waiting batches are kept in a ``ContextVar``: a thread, or an async task
whose database work runs through ``sync_to_async``, sees the batches of its
own transactions only.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol


class Batch(Protocol):
    """A transaction's deferred sweep (a batch of :mod:`cachesweeper.sweeps`)."""

    names: dict[str, None]

    def waiting(self) -> bool:
        """True until the transaction commits or rolls the sweep back."""


_batches: ContextVar[list[Batch] | None] = ContextVar("cachesweeper_uncommitted", default=None)
_NONE: frozenset[str] = frozenset()


def add(batch: Batch) -> None:
    """Remember a batch that now waits for its transaction's commit."""
    batches = _batches.get()
    if batches is None:
        _batches.set([batch])
    else:
        batches[:] = [*(known for known in batches if known.waiting()), batch]


def names() -> frozenset[str]:
    """The dependencies swept by this context's transactions, not committed yet."""
    batches = _batches.get()
    if not batches:
        return _NONE
    waiting = [batch for batch in batches if batch.waiting()]
    if len(waiting) != len(batches):
        batches[:] = waiting
    return frozenset(name for batch in waiting for name in batch.names)
