"""Copies of entries kept in a process's memory, checked against the tokens on each read.

An entry is valid exactly while its counter tokens are current and it is
fresh; neither depends on where its payload is read from. So a process that
keeps a copy of an entry it has read can serve that copy after reading only
the entry's tokens, a few bytes, instead of the whole payload: the same one
round trip, without the page crossing the network or being unpickled again.

Only entries with at least one counter token are kept: an entry without one
would be checked against nothing but its expiry, and would outlive a
deletion from the shared cache. Deleting entries from the cache does not
reach copies at all; sweeping (a token bump) does, in every process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from cachesweeper.entries import Entry


class Copies:
    """At most ``limit`` bytes of entries, the least recently used dropped first.

    Safe to share between threads: a WSGI server may run several.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[str, tuple[Entry, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def keep(self, key: str, entry: Entry, size: int) -> None:
        """Keep a copy of ``entry`` (``size`` bytes); one larger than the limit is not kept."""
        if not entry.counters or size > self.limit:
            return
        with self._lock:
            self._pop(key)
            self._items[key] = (entry, size)
            self.size += size
            while self.size > self.limit:
                self._pop(next(iter(self._items)))

    def drop(self, key: str) -> None:
        with self._lock:
            self._pop(key)

    def __len__(self) -> int:
        return len(self._items)

    def _pop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.size -= item[1]
