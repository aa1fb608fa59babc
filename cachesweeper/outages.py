"""Warnings about caches that cannot be reached: one per cache per interval.

With a cache down, every lookup fails; a warning with a traceback for each
one would bury the log (and slow every request down further). So each
cache gets one warning per ``CACHESWEEPER["WARNING_INTERVAL"]`` seconds (60
by default), which says how many failures were held back since the one
before; every failure, with its traceback, is logged at DEBUG.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from cachesweeper.conf import conf

logger = logging.getLogger("cachesweeper")

_lock = threading.Lock()
# cache name (or cache and entry key) -> (monotonic time of its last warning, failures
# held back since then)
_warned: dict[str, tuple[float, int]] = {}


def report(cache: str, consequence: str, error: BaseException) -> None:
    """Log that ``cache`` failed (``error``) and what that meant (``consequence``).

    Thread-safe: of concurrent failures exactly one warns, the others are counted.
    """
    logger.debug("cachesweeper: cache %s failed, %s", cache, consequence, exc_info=error)
    due, held, since = _due(cache)
    if due and _cluster_redirect(error):
        logger.error(
            "cachesweeper: cache %s is a node of a Redis Cluster (%s). Django's RedisCache "
            "and django-redis talk to one server and cannot follow the cluster's "
            "redirections, so every read and sweep fails (%s). Point the cache at a Redis "
            "that is not a cluster, or use a cluster-aware backend (django-valkey's "
            "ClusterValkeyCache).%s",
            cache,
            _describe(error),
            consequence,
            _held_back(held, since),
        )
    elif due:
        logger.warning(
            "cachesweeper: cache unreachable (%s), %s: %s%s",
            cache,
            consequence,
            _describe(error),
            _held_back(held, since),
        )


def too_large(cache: str, key: str, size: int, error: BaseException) -> None:
    """An entry the server refused for its size: not an outage, and the page still renders.

    Warned about once per entry per interval: the same fragment is refused on
    every request until it is made smaller.
    """
    logger.debug("cachesweeper: cache %s refused %s", cache, key, exc_info=error)
    due, held, since = _due(f"{cache} {key}")
    if due:
        logger.warning(
            "cachesweeper: entry of %d bytes not stored: larger than the server accepts "
            "(cache %s, key %s: %s). It is rendered afresh on every request: make it "
            "smaller, cache its parts as fragments of their own, or raise the server's "
            "item size limit: memcached's is 1 MB unless started with -I%s",
            size,
            cache,
            key,
            _describe(error),
            _held_back(held, since),
        )


def _due(topic: str) -> tuple[bool, int, float | None]:
    """Whether ``topic`` may warn now; the failures held back and seconds since its last."""
    now = time.monotonic()
    with _lock:
        last, held = _warned.get(topic, (None, 0))
        if last is not None and now - last < conf.WARNING_INTERVAL:
            _warned[topic] = (last, held + 1)
            return False, 0, None
        if len(_warned) >= _TOPICS_LIMIT:
            _warned.clear()
        _warned[topic] = (now, 0)
    return True, held, None if last is None else now - last


#: Topics remembered at most (entries refused for their size are one topic each).
_TOPICS_LIMIT = 10_000


def _cluster_redirect(error: BaseException) -> bool:
    """Whether a cluster node redirected a single-server client: ``MOVED``/``ASK``, ``CROSSSLOT``.

    Looked for in the error and its causes: django-redis wraps redis-py's errors.
    ``CLUSTERDOWN`` and ``TRYAGAIN`` are not among them: a cluster-aware client
    (django-valkey's) raises them when the cluster is down or resharding, which is
    an outage, not a wrong backend.
    """
    seen: BaseException | None = error
    for _ in range(3):
        if seen is None:
            return False
        if type(seen).__name__ in _REDIRECT_ERRORS or _REDIRECT.search(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


#: redis-py's errors for a cluster's redirections (its messages drop the word).
_REDIRECT_ERRORS = frozenset({"MovedError", "AskError", "ClusterCrossSlotError"})
_REDIRECT = re.compile(r"\b(?:MOVED|ASK) \d+ |\bCROSSSLOT\b")


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
