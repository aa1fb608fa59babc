"""The original django-cache-sweeper import paths.

from cachesweeper.utils import invalidate_cache_handler
post_save.connect(invalidate_cache_handler, sender=Comment)
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Model

from cachesweeper.sweeps import invalidate_cache_for

logger = logging.getLogger("cachesweeper")

__all__ = ["invalidate_cache_for", "invalidate_cache_handler"]


def invalidate_cache_handler(sender: Any, instance: Model, **kwargs: Any) -> None:
    """A ready-made ``post_save``/``post_delete`` receiver that sweeps the saved instance."""
    try:
        invalidate_cache_for(instance)
    except Exception:
        logger.exception("cachesweeper: could not sweep %r", instance)
