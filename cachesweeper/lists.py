"""The list entry of ``cachesweeper_for``: a whole cached list in one small read.

Each item of a list is cached as its own fragment, so lists that share items
(pages, filters, orderings) share their renders. Reading a list of N items
that way means 2N keys, and clients spend several microseconds on each key
(pymemcache and redis-py parse every value in Python), which for 100 items
costs more than the round trip itself.

So the joined list is also stored as one *list entry*, against the tokens
of every item (and of everything rendered inside them). A list that has not
changed is read as that entry and its tokens: N + 1 keys, one round trip.
When any item was swept, or the list holds other items than before, the
list entry misses and the items are served as usual, from their own
entries, then the list entry is stored again: one more read than a list
without it, the price of the item that changed.

A list entry never outlives the items in it: it expires when the oldest item
entry it was built from would, and it is not stored while an item is served
stale (grace) or could not be stored itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from cachesweeper import holes
from cachesweeper.conf import conf
from cachesweeper.entries import (
    HIT,
    LIST,
    MISS,
    STALE,
    Lookup,
    Rendered,
    Slot,
    announce,
    lookup,
    serve,
    slot,
)
from cachesweeper.keys import make_key

#: Shorter lists are served from their item entries alone.
MIN_ITEMS = 2


def serve_list(slots: Sequence[Slot], render: Callable[[int], Rendered]) -> Any:
    """The joined content of the items in ``slots``; ``render(i)`` builds item ``i``.

    A ``holes.Holed`` when items have holes, for the caller to fill.
    """
    if (
        len(slots) < MIN_ITEMS
        or not any(item.counter_names for item in slots)
        or any(item.untrusted for item in slots)
    ):
        # Attribute-versioned items need no token reads: their list is N keys already.
        # A list showing an item built in memory is never stored (entries._Render).
        return _join(serve(slots, render))
    first = slots[0]
    whole = slot(
        list_key(slots),
        [dep for item in slots for dep in item.dependencies],
        first.timeout,
        using=first.using,
        kind=LIST,  # its items judged their own load times (entries._predates_a_sweep)
    )

    def render_all(_: int) -> Rendered:
        items = lookup(slots)
        # The items' holes are in this frame already: the list entry keeps them.
        content = holes.content(_join(serve(slots, render, items)))
        return Rendered(content, content, timeout=_lifetime(whole.timeout, items))

    ((state, content),) = serve([whole], render_all)
    if state == HIT:
        for item in slots:
            announce(item, HIT)
    return content


def list_key(slots: Sequence[Slot]) -> str:
    """The key of the list entry of the items in ``slots``."""
    return make_key(conf.KEY_PREFIX, "l", [item.key for item in slots])


def _join(results: list[tuple[str, Any]]) -> Any:
    """The items' contents joined, with all their holes."""
    found: dict[str, holes.Hole] = {}
    parts = []
    for _, value in results:
        if isinstance(value, holes.Holed):
            found.update(value.holes)
            value = value.content
        parts.append(str(value))
    return holes.with_holes("".join(parts), found)


def _lifetime(timeout: float | None, items: Sequence[Lookup]) -> float | None:
    """How long the list entry may be served: no longer than any item entry in it."""
    now = time.time()
    lifetime = timeout
    for item in items:
        if item.state == STALE:
            return 0  # not stored: a stale item's old token would never match again
        if item.state == MISS or item.entry is None or item.entry.fresh_until is None:
            continue
        left = math.floor(item.entry.fresh_until - now)
        lifetime = left if lifetime is None else min(lifetime, left)
    return lifetime  # 0 or less: not stored
