"""Who fills the holes of what was served: an enclosing cache, Django, or the edge.

Content served with holes (:mod:`cachesweeper.holes`) is filled once, by the
outermost thing that caches it. Inside another cache (a fragment in a cached
page) the markers stay for that cache to store. Outermost, Django renders
each hole for this visitor, which makes the response theirs alone; or, for a
request through an edge that processes ESI, it writes an include per hole
and the page stays shared (:mod:`cachesweeper.esi`). The enclosing frame
learns which, so ``EdgeMiddleware`` labels the response accordingly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpRequest

from cachesweeper import collector, esi, holes, lists
from cachesweeper.entries import Slot

logger = logging.getLogger("cachesweeper")

#: The holes stay markers: an enclosing cache stores them.
KEEP = "keep"
#: Django renders the holes for this visitor.
FILL = "fill"
#: The edge fetches each hole (ESI includes).
INCLUDE = "include"


def marker(place: str, template: str | None, values: dict[str, Any]) -> str | None:
    """The marker a ``{% nocache %}`` renders, or ``None`` to render its body in place.

    The values are checked for what an ESI include can carry too, when an
    ESI edge is configured, so a hole behaves alike filled or included.
    """
    mark = holes.marker(place, template, values)
    if mark is not None:
        esi.check(place, values)
    return mark


def how(request: HttpRequest | None) -> str:
    """How the holes served here are handled (:data:`KEEP`, :data:`FILL`, :data:`INCLUDE`)."""
    frame = collector.current()
    if frame is not None and frame.keeps_holes:
        return KEEP
    include = esi.wanted(request)
    if frame is not None:
        if include:
            frame.esi_holes = True
        else:
            frame.filled_holes = True
    return INCLUDE if include else FILL


def finish(
    value: Any,
    request: HttpRequest | None,
    slots: Sequence[Slot],
    afresh: Callable[[], str],
) -> Any:
    """The text of served fragments: their holes kept, filled or included (see :func:`how`).

    When the stored content names a hole no template has any more (a deploy
    changed it), the fragments of ``slots`` are forgotten and ``afresh()``
    renders them without the cache.
    """
    if not isinstance(value, holes.Holed):
        return value
    way = how(request)
    if way == KEEP:
        return value.content
    render = esi.include if way == INCLUDE else None
    try:
        return holes.fill(value.content, value.holes, request, render)
    except holes.HoleLost as lost:
        forget(slots, lost)
        return afresh()


def forget(slots: Sequence[Slot], lost: holes.HoleLost) -> None:
    """Delete the entries that name a lost hole, so the next request stores them anew."""
    logger.warning("cachesweeper: %s; rendering afresh", lost)
    keys = [slot.key for slot in slots]
    if len(slots) > 1:
        keys.append(lists.list_key(slots))
    try:
        slots[0].cache.delete_many(keys)
    except Exception:
        pass  # found lost again next time, and rendered afresh again
