"""``register()``: the receivers of registered models and the cascades they sweep.

A save, delete or m2m change of a registered model sweeps the instance, its
model, its tags and what it touches (``touch=``, recursively), through
:func:`cachesweeper.sweeps.sweep`; what each model asked for is kept in
:mod:`cachesweeper.registry`. A receiver never raises into the code that
saved the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.signals import (
    m2m_changed,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_save,
)

from cachesweeper import fields as field_deps
from cachesweeper import loads, queries, registry, stamps, tokens, touching, triggers
from cachesweeper.dependencies import (
    every_row_names,
    hierarchy_names,
    instance_name,
    model_names,
    name_of,
    names_for_pks,
)
from cachesweeper.edges.loading import configured
from cachesweeper.registry import PurgeUrls, Registration, Tags, registration_for, urls_of
from cachesweeper.relay import relay
from cachesweeper.sweeps import sweep

logger = logging.getLogger("cachesweeper")

M = TypeVar("M", bound=type[models.Model])


@overload
def register(
    model: M,
    *,
    using: str | None = ...,
    touch: Iterable[str] = ...,
    tags: Tags | None = ...,
    purge_urls: PurgeUrls | None = ...,
    ignore_fields: Iterable[str] = ...,
    fields: Iterable[str] | None = ...,
) -> M: ...


@overload
def register(
    model: None = ...,
    *,
    using: str | None = ...,
    touch: Iterable[str] = ...,
    tags: Tags | None = ...,
    purge_urls: PurgeUrls | None = ...,
    ignore_fields: Iterable[str] = ...,
    fields: Iterable[str] | None = ...,
) -> Callable[[M], M]: ...


def register(
    model: M | None = None,
    *,
    using: str | None = None,
    touch: Iterable[str] = (),
    tags: Tags | None = None,
    purge_urls: PurgeUrls | None = None,
    ignore_fields: Iterable[str] = (),
    fields: Iterable[str] | None = None,
) -> M | Callable[[M], M]:
    """Sweep ``model``'s instances (and the model) on save, delete and m2m changes.

    ``using``: the token strategy for this model (``"counter"`` or an
    attribute name; ``None``: the configured ``USING``).
    ``touch``: relations whose targets are swept too, cascading through
    their own registrations: foreign keys, or ``__``-separated paths through
    reverse accessors and many-to-many relations (bounded, see
    :mod:`cachesweeper.touching`). ``tags``: extra named tags, a list or a
    callable taking the instance. ``ignore_fields``: a save whose
    ``update_fields`` are all among these sweeps nothing (a view counter, a
    draft's bookkeeping). ``fields``: the fields whose values name field
    dependencies, which QuerySets filtered on them depend on (``None``: every
    foreign key; ``()``: none; see :mod:`cachesweeper.fields`). Works as a
    class decorator as well.
    """
    if model is None:

        def decorator(model: M) -> M:
            return register(
                model,
                using=using,
                touch=touch,
                tags=tags,
                purge_urls=purge_urls,
                ignore_fields=ignore_fields,
                fields=fields,
            )

        return decorator

    touch = tuple(touch)
    for field_name in touch:
        _check_touch(model, field_name)
    ignore_fields = tuple(ignore_fields)
    ignored = frozenset(
        name for field_name in ignore_fields for name in _ignored_names(model, field_name)
    )
    tracked = None if fields is None else field_deps.check(model, fields)
    registry.add(
        model,
        Registration(
            strategy=using,
            touch=touch,
            tags=tags,
            purge_urls=purge_urls,
            ignore_fields=ignored,
            fields=tracked,
        ),
    )
    tokens.set_strategy(model, strategy=using)
    _connect()
    stamps.stamp_instances_of(model)
    queries.listen(loads.note)
    if any(_first_key(model, name) for name in touch):
        uid = f"cachesweeper.post_init.{model._meta.label}"
        post_init.connect(_remember_targets, sender=model, weak=False, dispatch_uid=uid)
    uid = f"cachesweeper.fields.{model._meta.label}"
    post_init.connect(_keep_fields, sender=model, weak=False, dispatch_uid=uid)
    return model


def _check_touch(model: type[models.Model], path: str) -> None:
    """A lone forward foreign key is the older touch; anything else must be a valid path."""
    if not touching.is_foreign_key(model, path):
        touching.check(model, path)


def _ignored_names(model: type[models.Model], field_name: str) -> tuple[str, ...]:
    """A column's field name and attname: ``save(update_fields=...)`` accepts either.

    Only fields with a column can be in ``update_fields`` (not a many-to-many).
    """
    fields = model._meta.concrete_fields
    field = next((f for f in fields if field_name in (f.name, f.attname)), None)
    if field is None:
        raise ImproperlyConfigured(
            f"cachesweeper.register({model.__name__}, ignore_fields=[{field_name!r}]): "
            f"{model.__name__} has no concrete field {field_name!r}"
        )
    return (field.name, field.attname)


def _connect() -> None:
    pre_save.connect(_on_pre_save, dispatch_uid="cachesweeper.pre_save")
    post_save.connect(_on_save, dispatch_uid="cachesweeper.post_save")
    pre_delete.connect(_on_pre_delete, dispatch_uid="cachesweeper.pre_delete")
    post_delete.connect(_on_save, dispatch_uid="cachesweeper.post_delete")
    m2m_changed.connect(_on_m2m_changed, dispatch_uid="cachesweeper.m2m_changed")


def _first_key(model: type[models.Model], path: str) -> str | None:
    """The forward foreign key a touch path starts with, if it does."""
    first = path.split("__", 1)[0]
    return first if touching.is_foreign_key(model, first) else None


def _remember_targets(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    """Keep the foreign keys touch paths start with, as loaded: old targets are swept too."""
    registration = registration_for(type(instance))
    if registration is None:
        return
    model = type(instance)
    keys = {key for path in registration.touch if (key := _first_key(model, path))}
    instance.__dict__["_cachesweeper_loaded"] = {
        key: instance.__dict__.get(instance._meta.get_field(key).attname)  # type: ignore[union-attr]
        for key in keys
    }


def _keep_fields(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    """Keep the tracked values an instance was built with (loaded: its row's)."""
    field_deps.keep(instance)


def _on_pre_save(
    sender: Any, instance: models.Model, using: str | None = None, **kwargs: Any
) -> None:
    """``pre_save``: an instance not loaded from its row has that row's tracked values read."""
    if registration_for(type(instance)) is not None:
        _arm(using)
        try:
            field_deps.read_old(instance, using)
        except Exception:
            logger.exception("cachesweeper: could not read the old values of %r", instance)


def _arm(database: str | None) -> None:
    """With database triggers, an autocommit write's trigger row waits for this sweep."""
    try:
        triggers.arm(connections[database or DEFAULT_DB_ALIAS])
    except Exception:
        logger.exception("cachesweeper: could not mark the write for its trigger")


def _disarm(database: str | None) -> None:
    """A save of ignored fields only: its trigger's row is taken by this process's relay
    thread moments later, not replayed after ``RELAY_DELAY``.

    The trigger cannot tell ignored columns from others, so with triggers such
    a write sweeps.
    """
    try:
        connection = connections[database or DEFAULT_DB_ALIAS]
        armed = None if connection.in_atomic_block else triggers.taken_key(connection)
        if armed is not None:
            relay.take_soon(connection.alias, armed, ())
    except Exception:
        logger.exception("cachesweeper: could not take the trigger's journal row")


def _on_pre_delete(
    sender: Any, instance: models.Model, using: str | None = None, **kwargs: Any
) -> None:
    """``pre_delete``: resolve the touch paths while the rows they go through still exist,
    and read the tracked values the instance did not load.

    A cascade or the many-to-many links go with the row; ``post_delete``
    sweeps what is kept here.
    """
    registration = registration_for(type(instance))
    if registration is None:
        return
    _on_pre_save(sender, instance, using)
    try:
        model = type(instance)
        instance.__dict__["_cachesweeper_reached"] = {
            path: touching.resolve(model, path, [instance.pk], using)
            for path in touching.paths(model, registration.touch)
        }
    except Exception:
        logger.exception("cachesweeper: could not find what %r touches", instance)


def _on_save(sender: Any, instance: models.Model, using: str | None = None, **kwargs: Any) -> None:
    """``post_save`` / ``post_delete``: sweep the instance and what it cascades to.

    ``using`` is the database alias, as Django's signals name it.
    """
    database = using
    registration = registration_for(type(instance))
    if registration is None:
        return
    # Kept by pre_delete for this delete only (a failed delete must not leave it).
    reached = instance.__dict__.pop("_cachesweeper_reached", None)
    update_fields = kwargs.get("update_fields")
    if update_fields and registration.ignore_fields.issuperset(update_fields):
        _disarm(database)
        return  # only ignored fields were written: nothing shown has changed
    try:
        urls: dict[str, None] = {}
        if "created" in kwargs:
            reached = None
        created = bool(kwargs.get("created"))
        names = _names_to_sweep(instance, registration, database, set(), urls, reached, created)
        # After a full save (post_save, not post_delete) the instance holds
        # exactly what was committed.
        full_save = "created" in kwargs and not kwargs.get("update_fields")
        sweep(names, database=database, urls=urls, saved=instance if full_save else None)
        if any(_first_key(type(instance), name) for name in registration.touch):
            _remember_targets(sender, instance)
        field_deps.keep(instance)  # the next write's old values
    except Exception:
        logger.exception("cachesweeper: could not sweep %r", instance)


def _on_m2m_changed(
    sender: Any,
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    """``m2m_changed``: sweep the registered sides of the changed links (``using``: database).

    Touch paths through the link are followed from both sides while linked:
    after an add, before a remove or a clear.
    """
    if action not in ("post_add", "pre_remove", "post_remove", "pre_clear"):
        return
    database = using
    try:
        names: list[str] = []
        urls: dict[str, None] = {}
        seen: set[str] = set()
        registration = registration_for(type(instance))
        if action == "pre_remove":
            names += _path_names(type(instance), [instance.pk], database, seen, urls)
            names += _path_names(model, list(pk_set or ()), database, seen, urls)
            sweep(names, database=database, urls=urls)
            return
        if registration is not None:
            names += _names_to_sweep(instance, registration, database, seen, urls)
            _touch_relinked(type(instance), [instance.pk], database)
        if registration_for(model) is not None:
            if pk_set is None:  # clear(): find the rows that are about to be unlinked
                pk_set = set(_related_ids(sender, instance, reverse, model, database))
            names += names_for_pks(model, pk_set) + model_names(model)
            names += field_deps.of_pks(model, pk_set, database)
            _touch_relinked(model, list(pk_set), database)
            if action != "post_remove":
                names += _path_names(model, list(pk_set), database, seen, urls)
        # clear() and add()/remove() run in a transaction: this waits for its commit.
        sweep(names, database=database, urls=urls)
    except Exception:
        logger.exception("cachesweeper: could not sweep m2m change on %r", instance)


def _touch_relinked(model: type[models.Model], ids: Sequence[Any], database: str | None) -> None:
    """Rows whose links changed were not saved: move their version attribute, if they have one.

    Their fragments compare that attribute, so the token bump alone would
    leave them stale. Best effort: a failure here never costs the sweep.
    """
    attribute = tokens.attribute_for(model)
    if attribute is None:
        return
    try:
        tokens.move_attribute(model, ids, attribute, database)
    except Exception:
        logger.exception("cachesweeper: could not move %s.%s", model.__name__, attribute)


def _related_ids(
    through: type[models.Model],
    instance: models.Model,
    reverse: bool,
    model: type[models.Model],
    database: str | None,
) -> list[Any]:
    """Primary keys of the ``model`` rows linked to ``instance`` through ``through``."""
    keys = [field for field in through._meta.fields if field.many_to_one]
    sources = [f for f in keys if issubclass(type(instance), f.related_model)]  # type: ignore[arg-type]
    targets = [f for f in keys if issubclass(model, f.related_model)]  # type: ignore[arg-type]
    if sources is targets or sources == targets:  # self-referential: order tells them apart
        sources, targets = (keys[1:], keys[:1]) if reverse else (keys[:1], keys[1:])
    source, target = sources[0], next(f for f in targets if f is not sources[0])
    rows = through._base_manager.db_manager(database).filter(**{source.attname: instance.pk})
    return list(rows.values_list(target.attname, flat=True))


def _names_to_sweep(
    instance: models.Model,
    registration: Registration,
    database: str | None,
    seen: set[str],
    urls: dict[str, None],
    reached: Mapping[str, touching.Reached] | None = None,
    created: bool = False,
) -> list[str]:
    """The instance, its model, its field dependencies, its tags, and what it touches,
    recursively.

    ``reached``: the touch paths already resolved (by ``pre_delete``, before
    the rows they go through were deleted); the others are resolved now.

    The instance and its model are named at every concrete level (a child of
    multi-table inheritance sweeps its parents' names too, see
    :func:`cachesweeper.dependencies.levels`).

    The URLs of every instance met are added to ``urls`` (for URL purges).
    The instance and its model are always swept; extras (tags, touched
    targets) are each best effort, so one failing extra never costs the sweep.
    """
    name = instance_name(instance)
    if name in seen:
        return []
    seen.add(name)
    urls.update(dict.fromkeys(urls_of(instance, registration.purge_urls)))
    names = [*hierarchy_names(instance), *model_names(type(instance))]
    names += field_deps.swept(instance, created)
    try:
        names += _tag_names(instance, registration.tags)
    except Exception:
        logger.exception("cachesweeper: the tags of %r could not be found", instance)
    for field_name in registration.touch:
        try:
            if touching.is_foreign_key(type(instance), field_name):
                names += _touched(instance, field_name, database, seen, urls)
                continue
            found = (reached or {}).get(field_name)
            if found is None:
                found = touching.resolve(type(instance), field_name, [instance.pk], database)
            names += _reached_names(found, database, seen, urls)
            names += _old_path_names(instance, field_name, database, seen, urls)
        except Exception:
            logger.exception("cachesweeper: could not sweep %r's %s", instance, field_name)
    return names


def _old_path_names(
    instance: models.Model,
    path: str,
    database: str | None,
    seen: set[str],
    urls: dict[str, None],
) -> list[str]:
    """A path that starts with a foreign key whose value moved: what it reached before.

    ``comment.article`` moved from A to B: ``article__author`` reaches B's
    author from the row now, and A's author is reached from A here.
    """
    key = _first_key(type(instance), path)
    if key is None or "__" not in path:
        return []
    field = instance._meta.get_field(key)
    old = instance.__dict__.get("_cachesweeper_loaded", {}).get(key)
    if old is None or old == instance.__dict__.get(field.attname):  # type: ignore[union-attr]
        return []
    target: type[models.Model] = field.related_model  # type: ignore[assignment]
    rest = path.split("__", 1)[1]
    found = touching.resolve(target, rest, [old], database)
    return _reached_names(found, database, seen, urls)


def _path_names(
    model: type[models.Model],
    ids: Sequence[Any],
    database: str | None,
    seen: set[str],
    urls: dict[str, None],
) -> list[str]:
    """What the touch paths of ``model``'s rows ``ids`` reach (one query a path, all rows)."""
    registration = registration_for(model)
    if registration is None or not ids:
        return []
    names: list[str] = []
    for path in touching.paths(model, registration.touch):
        try:
            found = touching.resolve(model, path, ids, database)
            names += _reached_names(found, database, seen, urls)
        except Exception:
            logger.exception("cachesweeper: could not sweep %s's %s", model.__name__, path)
    return names


def _reached_names(
    reached: touching.Reached,
    database: str | None,
    seen: set[str],
    urls: dict[str, None],
) -> list[str]:
    """The names of a path's targets, as a touched foreign key's: their model past the limit."""
    target = reached.target
    registration = registration_for(target)
    names = model_names(target)
    if registration is not None:
        names += _tag_names(None, registration.tags)
    if reached.overflow:
        return names + every_row_names(target)
    if not reached.ids:
        return names
    needs_instance = (
        registration is not None and (registration.touch or callable(registration.tags))
    ) or _purges_urls(target, registration)
    if not needs_instance:
        return names + names_for_pks(target, reached.ids) + list(reached.fields)
    manager = target._base_manager.db_manager(database)
    for instance in manager.filter(pk__in=reached.ids):
        names += _names_to_sweep(instance, registration or Registration(), database, seen, urls)
    return names


def _touched(
    instance: models.Model,
    field_name: str,
    database: str | None,
    seen: set[str],
    urls: dict[str, None],
) -> list[str]:
    field = instance._meta.get_field(field_name)
    target_model: type[models.Model] = field.related_model  # type: ignore[assignment]
    target_registration = registration_for(target_model)
    attribute = tokens.attribute_for(target_model)
    loaded = instance.__dict__.get("_cachesweeper_loaded", {}).get(field_name)
    current = getattr(instance, field.attname)  # type: ignore[union-attr]
    ids = [value for value in dict.fromkeys((current, loaded)) if value is not None]
    by_pk = field.target_field.primary_key  # type: ignore[union-attr]
    needs_instance = (
        not by_pk
        or (
            target_registration is not None
            and (target_registration.touch or callable(target_registration.tags))
        )
        or _purges_urls(target_model, target_registration)
    )
    if attribute is not None:
        lookup = field.target_field.attname  # type: ignore[union-attr]
        tokens.move_attribute(target_model, ids, attribute, database, lookup)
    names: list[str] = []
    if not needs_instance:
        names += names_for_pks(target_model, ids) + model_names(target_model)
        names += field_deps.of_pks(target_model, ids, database)
        if target_registration is not None:
            names += _tag_names(None, target_registration.tags)
        return names
    lookup = field.target_field.attname  # type: ignore[union-attr]
    manager = target_model._base_manager.db_manager(database)
    for target in manager.filter(**{f"{lookup}__in": ids}):
        registration = target_registration or Registration()
        names += _names_to_sweep(target, registration, database, seen, urls)
    return names


def _purges_urls(model: type[models.Model], registration: Registration | None) -> bool:
    """Whether an edge will want this model's URLs (worth loading a touched instance for)."""
    try:
        return registry.has_urls(model, registration) and bool(configured())
    except Exception:  # misconfigured edges are reported by the system checks
        return False


def _tag_names(instance: models.Model | None, tags: Tags | None) -> list[str]:
    if tags is None:
        return []
    if callable(tags):
        if instance is None:
            return []
        tags = tags(instance)
    return [name_of(tag) for tag in tags]
