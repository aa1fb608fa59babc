"""Warnings about caches that cannot be reached: one per cache per interval.

With a cache down, every lookup fails; a warning with a traceback for each
one would bury the log (and slow every request down further). So each
cache gets one warning per ``CACHESWEEPER["WARNING_INTERVAL"]`` seconds (60
by default), which says how many failures were held back since the one
before; every failure, with its traceback, is logged at DEBUG.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from cachesweeper.conf import conf

logger = logging.getLogger("cachesweeper")

_lock = threading.Lock()
# cache name -> (monotonic time of its last warning, failures held back since then)
_warned: dict[str, tuple[float, int]] = {}


def report(cache: str, consequence: str, error: BaseException) -> None:
    """Log that ``cache`` failed (``error``) and what that meant (``consequence``).

    Thread-safe: of concurrent failures exactly one warns, the others are counted.
    """
    logger.debug("cachesweeper: cache %s failed, %s", cache, consequence, exc_info=error)
    now = time.monotonic()
    with _lock:
        last, held = _warned.get(cache, (None, 0))
        if last is not None and now - last < conf.WARNING_INTERVAL:
            _warned[cache] = (last, held + 1)
            return
        _warned[cache] = (now, 0)
    logger.warning(
        "cachesweeper: cache unreachable (%s), %s: %s%s",
        cache,
        consequence,
        _describe(error),
        _held_back(held, None if last is None else now - last),
    )


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _held_back(held: int, since: float | None) -> str:
    """What the warning adds in parentheses: failures held back, and when the next may warn."""
    notes = []
    if held and since is not None:
        notes.append(
            f"{held} more failure{'s' if held != 1 else ''} since the last warning, "
            f"{since:.0f}s ago"
        )
    interval = conf.WARNING_INTERVAL
    if interval > 0:
        notes.append(f"further failures within {interval:g}s are logged at DEBUG only")
    return f" ({'; '.join(notes)})" if notes else ""


def forget() -> None:
    """Start afresh: the next failure of every cache warns."""
    with _lock:
        _warned.clear()


@receiver(setting_changed)
def _reconfigured(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHES", "CACHESWEEPER"):  # other caches, or another interval
        forget()
