"""``caches[alias]`` for the read path, without its cost on every hit.

Django hands each thread (and each async context) its own backend objects
through asgiref's ``Local``, and every ``caches[alias]`` goes through that
``Local``'s storage lookup, which costs more on a hit than in a tight loop:
there it runs between round trips with cold CPU caches. A hit looks
up one or two backends, so they are remembered here under the same rules:

- per thread: a memo is only used by the thread that made it;
- per context: the memo lives in a ``ContextVar`` and is replaced, never
  changed in place, so a backend first met in an async task stays that
  task's (and its children's), as Django's would;
- per ``CACHES`` setting: ``override_settings(CACHES=...)`` makes Django start
  afresh, and forgets every memo here too.

A backend not yet remembered is always asked of ``caches`` itself.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

from django.core.cache import BaseCache, InvalidCacheBackendError, caches
from django.core.signals import setting_changed
from django.dispatch import receiver

# (generation, thread, alias -> backend)
_Memo = tuple[int, int, dict[str, BaseCache]]

_memo: ContextVar[_Memo | None] = ContextVar("cachesweeper.backends", default=None)
_generation = 0


def backend(alias: str) -> BaseCache:
    """``caches[alias]``, as Django would answer it in this thread and context."""
    memo = _memo.get()
    thread = threading.get_ident()
    if memo is not None and memo[0] == _generation and memo[1] == thread:
        found = memo[2].get(alias)
        if found is not None:
            return found
        known = memo[2]
    else:
        known = {}
    cache = caches[alias]
    _memo.set((_generation, thread, {**known, alias: cache}))
    return cache


def exists(alias: str) -> bool:
    """Whether ``alias`` is in ``CACHES``: a tag's ``using=`` typo is an error, not an outage."""
    try:
        backend(alias)
    except InvalidCacheBackendError:
        return False
    return True


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    global _generation
    if setting == "CACHES":
        _generation += 1
