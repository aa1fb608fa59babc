"""cachesweeper: key-based cache invalidation for Django.

Cached content remembers the version tokens of what it depends on; a sweep
bumps a token (one atomic operation, whatever the number of entries) and
stale content is simply never read again.

The public names load on first use, so importing one module of the package
(``cachesweeper.conf``, say) does not import the read and sweep paths with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cachesweeper.pages import cache_page, versioned
    from cachesweeper.registration import register
    from cachesweeper.sweeps import (
        invalidate_cache_for,
        invalidate_model,
        invalidate_queryset,
        invalidate_tag,
    )

#: Public name -> the module that defines it.
_HOMES = {
    "cache_page": "cachesweeper.pages",
    "versioned": "cachesweeper.pages",
    "invalidate_cache_for": "cachesweeper.sweeps",
    "invalidate_model": "cachesweeper.sweeps",
    "invalidate_queryset": "cachesweeper.sweeps",
    "invalidate_tag": "cachesweeper.sweeps",
    "register": "cachesweeper.registration",
}

__all__ = [
    "cache_page",
    "invalidate_cache_for",
    "invalidate_model",
    "invalidate_queryset",
    "invalidate_tag",
    "register",
    "versioned",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
        globals()[name] = value  # the next lookup is an ordinary attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
