"""The original django-cache-sweeper ``ModelSweeper`` mixin (cachesweeper defines no models)."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Model

from cachesweeper.dependencies import instance_name
from cachesweeper.sweeps import sweep
from cachesweeper.utils import invalidate_cache_handler

logger = logging.getLogger("cachesweeper")


class ModelSweeper:
    """Mix into a model to sweep each instance when it is saved or deleted.

        class Comment(ModelSweeper, models.Model): ...

    The sweep covers the instance that was saved (the original swept the
    wrong one) and happens after the transaction commits. ``register()``
    does the same without a mixin, and adds model-level sweeps and touch.
    """

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)  # type: ignore[misc]
        assert isinstance(self, Model)
        invalidate_cache_handler(type(self), self)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        assert isinstance(self, Model)
        name, database = instance_name(self), self._state.db
        result = super().delete(*args, **kwargs)  # type: ignore[misc]
        try:
            sweep([name], database=database)
        except Exception:
            logger.exception("cachesweeper: could not sweep %s", name)
        return result
