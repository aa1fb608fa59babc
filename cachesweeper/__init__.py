"""cachesweeper: key-based cache invalidation for Django.

Cached content remembers the version tokens of what it depends on; a sweep
bumps a token (one atomic operation, whatever the number of entries) and
stale content is simply never read again.
"""

from cachesweeper.pages import cache_page, versioned
from cachesweeper.sweeps import (
    invalidate_cache_for,
    invalidate_model,
    invalidate_queryset,
    invalidate_tag,
    register,
)

__all__ = [
    "cache_page",
    "invalidate_cache_for",
    "invalidate_model",
    "invalidate_queryset",
    "invalidate_tag",
    "register",
    "versioned",
]
