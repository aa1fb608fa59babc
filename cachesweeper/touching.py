"""``touch`` paths: ``__``-separated relations from a registered model to what it shows on.

A path is a chain of accessor names: forward foreign keys and one-to-ones,
reverse foreign keys (``related_name`` or ``<model>_set``) and many-to-many
relations either way (``touch=["authorships__page"]``). A lone forward foreign
key keeps the older, query-free handling in :mod:`cachesweeper.registration`
(its old target is swept too); every other path is resolved here with one
query per path, read backwards from the target model, and bounded: past
``INSTANCE_LIMIT`` targets the target model is swept instead of its rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.db.models import ForeignObjectRel

from cachesweeper import tokens
from cachesweeper.conf import conf
from cachesweeper.fields import of_rows
from cachesweeper.registry import tracked_fields

logger = logging.getLogger("cachesweeper")


@dataclass(frozen=True)
class Path:
    """A checked path: the model it ends on and the lookup from there back to the source."""

    target: type[models.Model]
    back: str


@dataclass(frozen=True)
class Reached:
    """The targets of one path: their primary keys and the field dependencies of their
    tracked values, or ``overflow`` past ``INSTANCE_LIMIT``."""

    target: type[models.Model]
    ids: tuple[Any, ...]
    overflow: bool = False
    fields: tuple[str, ...] = ()


def is_foreign_key(model: type[models.Model], name: str) -> bool:
    """Whether ``name`` is one forward ``ForeignKey``/``OneToOneField`` (the older touch)."""
    if "__" in name:
        return False
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return bool((field.many_to_one or field.one_to_one) and not field.auto_created)


def paths(model: type[models.Model], touch: Iterable[str]) -> list[str]:
    """The entries of ``touch`` resolved here (everything but a lone forward foreign key)."""
    return [name for name in touch if not is_foreign_key(model, name)]


@cache
def check(model: type[models.Model], path: str) -> Path:
    """Follow ``path`` from ``model``; ``ImproperlyConfigured`` names the bad segment."""
    current = model
    backs: list[str] = []
    for segment in path.split("__"):
        where = f"cachesweeper.register({model.__name__}, touch=[{path!r}]): "
        field = _relation(current, segment)
        if field is None:
            raise ImproperlyConfigured(
                f"{where}{current.__name__} has no field or accessor {segment!r}"
            )
        back = _back(field)
        if back is None:
            raise ImproperlyConfigured(
                f"{where}{current.__name__}.{segment} is not a relation touch can follow: touch "
                "takes ForeignKey or OneToOneField fields, many-to-many fields and reverse "
                "accessors, `__`-separated, each with a reverse query name (not related_name='+')"
            )
        backs.append(back)
        current = field.related_model
    return Path(target=current, back="__".join(reversed(backs)))


def _relation(model: type[models.Model], segment: str) -> Any:
    """The field or reverse relation named ``segment`` (query name or accessor name)."""
    try:
        return model._meta.get_field(segment)
    except FieldDoesNotExist:
        pass
    for relation in model._meta.related_objects:
        if relation.get_accessor_name() == segment:
            return relation
    return None


def _back(field: Any) -> str | None:
    """The lookup from the far side of ``field`` back to its near side, if it has one."""
    if isinstance(field, ForeignObjectRel):
        remote = field.field
        if isinstance(remote, models.ForeignKey | models.ManyToManyField):
            return str(remote.name)
        return None
    if isinstance(field, models.ForeignKey | models.ManyToManyField):
        if str(field.remote_field.related_name or "").endswith("+"):
            return None  # no reverse query name to read the path back with
        return str(field.related_query_name())
    return None


def resolve(
    model: type[models.Model], path: str, ids: Sequence[Any], database: str | None
) -> Reached:
    """The targets of ``path`` from ``model``'s rows ``ids``, in one query.

    An attribute-versioned target has its attribute moved here (one
    ``UPDATE``, all of the targets even past the limit): its fragments
    compare that attribute, which no token sweep reaches.
    """
    checked = check(model, path)
    target = checked.target
    ids = [value for value in ids if value is not None]
    if not ids:
        return Reached(target, ())
    lookup = f"{checked.back}__pk"
    rows = target._base_manager.db_manager(database).filter(**{f"{lookup}__in": ids})
    limit = conf.INSTANCE_LIMIT
    tracked = [field.attname for field in tracked_fields(target)]
    selected = list(rows.order_by().values_list("pk", *tracked).distinct()[: limit + 1])
    found = tuple(row[0] for row in selected)
    overflow = len(found) > limit
    attribute = tokens.attribute_for(target)
    if attribute is not None and found:
        if overflow:
            tokens.move_attribute(target, ids, attribute, database, lookup)
        else:
            tokens.move_attribute(target, found, attribute, database)
    if overflow:
        logger.debug(
            "cachesweeper: %s touch %r reaches more than %d %s rows: sweeping the model",
            model.__name__,
            path,
            limit,
            target.__name__,
        )
        return Reached(target, (), overflow=True)
    return Reached(target, found, fields=tuple(of_rows(target, [row[1:] for row in selected])))
