"""Field dependencies, the sweep side: what a write of a tracked field sweeps.

A *field dependency* names the rows of a model with one value in one field,
"comments whose ``article`` is 5": ``testapp.comment.article=5`` (spelled by
:func:`cachesweeper.dependencies.field_name`). A QuerySet filtered on such a
value depends on it instead of on its whole model
(:func:`cachesweeper.dependencies.selection_names`), so a comment saved on
another article leaves it alone.

*Tracked* fields: every foreign key of a registered model, or the fields
named in ``register(Model, fields=(...))``; ``fields=()`` tracks none.

A save or delete sweeps the names of the row's values in every tracked field,
old and new: a row entering, leaving or changing inside a selection has the
selection's value before or after the write. Old values are the ones the
instance was loaded with, kept when it is built (``post_init``: no extra
query) and after each save. Those not known (an instance built in memory with
the key of an existing row, a field deferred by ``only()``/``defer()``) are
read before the write, in one query: loaded, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model

from cachesweeper.dependencies import field_name
from cachesweeper.registry import tracked_fields

#: Where an instance keeps the values of its tracked fields as last loaded or saved.
KEPT = "_cachesweeper_fields"


def check(model: type[Model], names: Iterable[str]) -> tuple[str, ...]:
    """The ``fields=`` of ``register()``, checked: concrete fields with a column."""
    checked = []
    for name in names:
        field = next((f for f in model._meta.concrete_fields if name in (f.name, f.attname)), None)
        if field is None:
            raise ImproperlyConfigured(
                f"cachesweeper.register({model.__name__}, fields=[{name!r}]): "
                f"{model.__name__} has no concrete field {name!r} (a field with a column, "
                "not a many-to-many relation)"
            )
        checked.append(field.name)
    return tuple(checked)


def keep(instance: Model) -> None:
    """Keep the tracked values ``instance`` holds now: the old values of its next write.

    A deferred field (``only()``, ``defer()``) is not kept: its value is not known.
    """
    fields = tracked_fields(type(instance))
    if fields:
        values = instance.__dict__
        values[KEPT] = {f.attname: values[f.attname] for f in fields if f.attname in values}


def read_old(instance: Model, database: str | None) -> None:
    """Before a save or delete: read the old values this process does not know, one query.

    Those of an instance built in memory with a primary key (perhaps an
    existing row's), of a deferred field, or of an instance whose class was
    not watched when it was built (a subclass of a registered model).
    """
    fields = tracked_fields(type(instance))
    if not fields or instance.pk is None:
        return
    if instance._state.adding and instance._meta.pk.has_default():
        return  # Django inserts such an instance without looking for its row: created
    kept: dict[str, Any] = {} if instance._state.adding else instance.__dict__.get(KEPT) or {}
    missing = [field.attname for field in fields if field.attname not in kept]
    if missing:
        rows = type(instance)._base_manager.db_manager(database).filter(pk=instance.pk)
        found = rows.values(*missing).first()  # None: no such row, the save creates it
        kept.update(found or {})
    instance.__dict__[KEPT] = kept


def swept(instance: Model, created: bool) -> list[str]:
    """What a write of ``instance`` sweeps: its tracked fields' new and old values."""
    fields = tracked_fields(type(instance))
    if not fields:
        return []
    values = instance.__dict__
    kept: Mapping[str, Any] = values.get(KEPT) or {}
    names = []
    for field in fields:
        attname = field.attname
        if attname in values:
            names.append(field_name(field, values[attname]))
        if not created and attname in kept:  # also a deferred field's, which did not change
            names.append(field_name(field, kept[attname]))
    return list(dict.fromkeys(names))


def of_pks(model: type[Model], pks: Iterable[Any], database: str | None) -> list[str]:
    """The field dependencies of ``model``'s rows ``pks`` as they are: one query, if tracked.

    For rows whose content changed without a write of their own (touched,
    linked): the lists they are in show them.
    """
    fields = tracked_fields(model)
    pks = list(pks)
    if not fields or not pks:
        return []
    rows = model._base_manager.db_manager(database).filter(pk__in=pks)
    return of_rows(model, list(rows.values_list(*(field.attname for field in fields))))


def of_rows(model: type[Model], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The names of ``rows``: each the values of ``tracked_fields(model)``, in order."""
    fields = tracked_fields(model)
    return list(dict.fromkeys(field_name(f, row[i]) for row in rows for i, f in enumerate(fields)))
