"""In-process counters: hits, misses, stale serves, sweeps and edge purges.

Every fragment or page served is counted by state (the read path bumps
:data:`SERVED`), every sweep by the number of names it bumped (the sweep path
calls :func:`swept`), and purge counts are read from the edge purge queue::

    from cachesweeper import stats
    stats.snapshot()  # {"hits": 120, "misses": 8, "stale": 1, "sweeps": 3, ...}
    stats.reset()

The counters belong to **this process**: each web worker (gunicorn, uWSGI,
...) has its own, and a management command sees only what it did itself.
Expose :func:`snapshot` from inside your workers (a staff-only view, a
metrics exporter) to watch a live site.

Increments are plain dict updates under the GIL: no lock on the read path.
On a free-threaded interpreter an increment racing another may, rarely, be
lost; the numbers are for monitoring, not for accounting.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cachesweeper.edges import queue

#: Fragments and pages served, by state (``"hit"``, ``"stale"``, ``"miss"``); the read
#: path increments it directly (``SERVED[state] += 1``), which is cheaper than a call.
#: A re-render that fails and falls back to a stale entry counts a miss and a stale serve.
SERVED: dict[str, int] = {"hit": 0, "stale": 0, "miss": 0}

_sweeps: dict[str, int] = {"calls": 0, "names": 0, "largest": 0}
_since = time.time()
# Purge queue counts at the last reset(): the queue is never reset, snapshots subtract.
_purge_base: dict[str, int] = {"queued": 0, "delivered": 0, "failed": 0, "widened": 0}


def swept(count: int) -> None:
    """Count one sweep that bumped ``count`` dependency names."""
    _sweeps["calls"] += 1
    _sweeps["names"] += count
    if count > _sweeps["largest"]:
        _sweeps["largest"] = count


def snapshot() -> dict[str, Any]:
    """All counters since the process started or :func:`reset` was last called.

    Keys: ``hits``, ``misses``, ``stale`` (fragments and pages served),
    ``hit_ratio`` (hits and stale serves over all serves, ``None`` before the first),
    ``sweeps`` (sweep calls), ``names_swept`` (dependency names bumped),
    ``largest_sweep`` (most names bumped by one sweep: the largest fan-out),
    ``purges_queued`` / ``purges_delivered`` / ``purges_failed`` / ``purges_widened``
    (edge purge queue: queued and delivered count names and URLs, failed counts failed
    purge calls, one per batch an edge refused or could not be reached for, each retried),
    ``purges_pending`` (not yet delivered), ``since`` (a Unix time) and
    ``process`` (the process id: the counters are this process's only).
    """
    hits, stale, misses = SERVED["hit"], SERVED["stale"], SERVED["miss"]
    total = hits + stale + misses
    queue = _purge_counts()
    return {
        "hits": hits,
        "misses": misses,
        "stale": stale,
        "hit_ratio": round((hits + stale) / total, 4) if total else None,
        "sweeps": _sweeps["calls"],
        "names_swept": _sweeps["names"],
        "largest_sweep": _sweeps["largest"],
        "purges_queued": queue["queued"] - _purge_base["queued"],
        "purges_delivered": queue["delivered"] - _purge_base["delivered"],
        "purges_failed": queue["failed"] - _purge_base["failed"],
        "purges_widened": queue["widened"] - _purge_base["widened"],
        "purges_pending": queue["pending"],
        "since": _since,
        "process": os.getpid(),
    }


def reset() -> None:
    """Start every counter again from zero (purges still pending stay pending)."""
    global _since
    for state in SERVED:
        SERVED[state] = 0
    for name in _sweeps:
        _sweeps[name] = 0
    queue = _purge_counts()
    for name in _purge_base:
        _purge_base[name] = queue[name]
    _since = time.time()


def _purge_counts() -> dict[str, int]:
    purges = queue.purges  # looked up at call time: tests replace the queue
    stats = purges.stats
    return {
        "queued": stats.queued,
        "delivered": stats.delivered,
        "failed": stats.failed,
        "widened": stats.widened,
        "pending": purges.pending(),
    }
