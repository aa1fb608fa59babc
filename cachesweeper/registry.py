"""Registered models and how they were registered: what a save of one sweeps.

Pure data: :func:`cachesweeper.register` (in :mod:`cachesweeper.registration`)
fills it; the sweeps, the receivers and the system checks read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models

logger = logging.getLogger("cachesweeper")

Tags = Iterable[Any] | Callable[[Any], Iterable[Any]]
PurgeUrls = Callable[[Any], Iterable[str]]


@dataclass(frozen=True)
class Registration:
    """One ``register(model, ...)`` call.

    ``strategy`` is the token strategy asked for with ``using=`` (``None``:
    the configured ``USING``), ``touch`` the foreign keys whose targets are
    swept too, ``tags`` the extra named tags, ``purge_urls`` the callable
    naming the instance's URLs, ``ignore_fields`` the field names and
    attnames whose sole update sweeps nothing, ``fields`` the tracked fields
    (``None``: every foreign key; see :mod:`cachesweeper.fields`).
    """

    strategy: str | None = None
    touch: tuple[str, ...] = ()
    tags: Tags | None = None
    purge_urls: PurgeUrls | None = None
    ignore_fields: frozenset[str] = frozenset()
    fields: tuple[str, ...] | None = None


_registry: dict[type[models.Model], Registration] = {}
_changes = 0


def add(model: type[models.Model], registration: Registration) -> None:
    """Remember how ``model`` was registered (a later registration replaces it)."""
    global _changes
    _registry[model] = registration
    _changes += 1
    _tracked.clear()


def remove(model: type[models.Model]) -> None:
    """Forget ``model``'s registration (its receivers stay connected, and find none)."""
    global _changes
    del _registry[model]
    _changes += 1
    _tracked.clear()


def changes() -> int:
    """How many registrations were made: what is derived from the registry is stale
    when this moved."""
    return _changes


def registrations() -> dict[type[models.Model], Registration]:
    """Every registered model and how it was registered (for the system checks)."""
    return dict(_registry)


def registration_for(model: type[models.Model]) -> Registration | None:
    """How ``model``, or the nearest registered class it inherits from, was registered."""
    for klass in model.__mro__:
        if klass in _registry:
            return _registry[klass]
    return None


_tracked: dict[type[models.Model], tuple[models.Field[Any, Any], ...]] = {}


def tracked_fields(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    """The fields whose values name field dependencies (:mod:`cachesweeper.fields`):
    ``register(fields=...)``, or every foreign key and one-to-one of ``model``."""
    found = _tracked.get(model)
    if found is None:
        registration = registration_for(model)
        if registration is None:
            found = ()
        elif registration.fields is None:
            found = tuple(
                field
                for field in model._meta.concrete_fields
                if field.many_to_one or (field.one_to_one and not field.remote_field.parent_link)  # type: ignore[union-attr]
            )
        else:
            found = tuple(model._meta.get_field(name) for name in registration.fields)  # type: ignore[misc]
        _tracked[model] = found
    return found


def urls_of(instance: models.Model, purge_urls: PurgeUrls | None) -> list[str]:
    """Paths an edge caches this instance under: ``purge_urls``, ``get_purge_urls()``
    or ``get_absolute_url()``, the first that exists."""
    try:
        if purge_urls is not None:
            return list(purge_urls(instance))
        if hasattr(instance, "get_purge_urls"):
            return list(instance.get_purge_urls())
        if hasattr(instance, "get_absolute_url"):
            return [str(instance.get_absolute_url())]
    except Exception:
        logger.exception("cachesweeper: could not find the URLs of %r", instance)
    return []


def has_urls(model: type[models.Model], registration: Registration | None) -> bool:
    """Whether :func:`urls_of` can name URLs for ``model``'s instances."""
    return (registration is not None and registration.purge_urls is not None) or any(
        hasattr(model, method) for method in ("get_purge_urls", "get_absolute_url")
    )
