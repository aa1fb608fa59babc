"""The original django-cache-sweeper import paths.

    from cachesweeper.utils import ModelSweeper, invalidate_cache_for, invalidate_cache_handler

The original defined ``ModelSweeper`` here, and ``cachesweeper.models`` re-exports it.
This module defines no models and imports no ``models`` module, so a project's own
``models.py`` can import it while Django is still loading apps, whatever the order of
``INSTALLED_APPS`` (importing it from ``cachesweeper.models`` into this module would be
a circular import).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Model

from cachesweeper.dependencies import instance_name
from cachesweeper.sweeps import invalidate_cache_for, sweep

logger = logging.getLogger("cachesweeper")

__all__ = ["ModelSweeper", "invalidate_cache_for", "invalidate_cache_handler"]


def invalidate_cache_handler(sender: Any, instance: Model, **kwargs: Any) -> None:
    """A ready-made ``post_save``/``post_delete`` receiver that sweeps the saved instance."""
    try:
        invalidate_cache_for(instance)
    except Exception:
        logger.exception("cachesweeper: could not sweep %r", instance)


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

    def sweep(self) -> None:
        """Sweep this instance now (after commit inside a transaction), as the original did."""
        assert isinstance(self, Model)
        invalidate_cache_for(self)
