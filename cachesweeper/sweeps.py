"""Sweeps: bump the tokens of dependencies, after commit, and never lose one.

Inside ``transaction.atomic()`` a sweep waits for the commit (so no reader
can cache pre-commit data under the new token) and is de-duplicated per
transaction; a rollback sweeps nothing. A bump that cannot reach the
version cache is logged at error level and retried in the background; it
never raises into the code that saved the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import m2m_changed, post_delete, post_init, post_save
from django.utils import timezone

from cachesweeper import retries, stamps, stats, tokens, uncommitted
from cachesweeper.dependencies import encode, instance_name, model_name, name_of, tag_name
from cachesweeper.edges.loading import configured

logger = logging.getLogger("cachesweeper")

M = TypeVar("M", bound=type[models.Model])
Tags = Iterable[Any] | Callable[[Any], Iterable[Any]]


# -- explicit sweeps -----------------------------------------------------------


def invalidate_cache_for(instance: models.Model, using: str | None = None) -> None:
    """Sweep one instance: content depending on it is rendered afresh.

    ``using`` picks the token strategy: ``None`` for the model's own,
    ``"counter"``, or an attribute name such as ``"updated_at"`` (which is then
    set to now with one ``UPDATE``, as Rails' ``touch`` does, and the counter
    is bumped as well). The instance in memory keeps its old value: load it
    again to render it afresh.

    ``using="counter"`` on a model versioned by an attribute raises
    ``ValueError``: its fragments compare the attribute, which a counter bump
    does not move, so that sweep would silently leave them stale.
    """
    model = type(instance)
    attribute = tokens.attribute_for(model)
    if using == tokens.COUNTER and attribute is not None:
        raise ValueError(
            f"cachesweeper: {model.__name__} is versioned by its {attribute!r} attribute, "
            "which a counter sweep does not move, so its fragments would stay stale; "
            f"call invalidate_cache_for({model.__name__.lower()}) without using= (it "
            f"updates {attribute}), or register {model.__name__} with using='counter'"
        )
    if using is not None and using != tokens.COUNTER:
        attribute = using
    database = instance._state.db or router.db_for_write(model)
    if attribute is not None:
        _touch_attribute(model, [instance.pk], attribute, database)
    registration = registration_for(model)
    urls = _urls(instance, registration.purge_urls if registration else None)
    sweep([instance_name(instance)], database=database, urls=urls)


def invalidate_model(model: type[models.Model]) -> None:
    """Sweep the model-level dependency (fragments on the class or a QuerySet of it)."""
    sweep([model_name(model)], database=router.db_for_write(model))


def invalidate_tag(*names: str) -> None:
    """Sweep named tags."""
    sweep([tag_name(name) for name in names])


def invalidate_queryset(queryset: models.QuerySet[Any]) -> None:
    """Sweep every instance ``queryset`` matches, and their model.

    ``QuerySet.update()``, ``bulk_create()`` and ``bulk_update()`` send no
    signals; call this with the affected rows, in the same
    ``transaction.atomic()`` as the bulk write (the sweep then waits for the
    commit), and before an update that changes which rows the filter matches.

    For a model versioned by an attribute, the matched rows' attribute is
    moved on with one ``UPDATE`` (as ``touch`` does): their fragments compare
    that attribute, so a token bump alone would leave them stale.
    """
    model = queryset.model
    label = model_name(model)
    pks = list(queryset.values_list("pk", flat=True))
    attribute = tokens.attribute_for(model)
    if attribute is not None:
        database = queryset._db or router.db_for_write(model)  # type: ignore[attr-defined]
        _touch_attribute(model, pks, attribute, database)
    names = [f"{label}.{encode(str(pk))}" for pk in pks]
    sweep([*names, label], database=queryset.db)


def sweep(
    names: Iterable[str],
    database: str | None = None,
    urls: Iterable[str] = (),
    saved: models.Model | None = None,
) -> None:
    """Bump the tokens of ``names`` now, or when the current transaction commits.

    Edges are told after the bump: purges of ``names`` and of the URL paths
    ``urls`` (for edges that purge by URL). ``saved`` is the instance whose
    save caused the sweep: it holds what was committed, so it is stamped as
    loaded after the bump.
    """
    names, urls = list(dict.fromkeys(names)), list(dict.fromkeys(urls))
    if not names and not urls:
        return
    connection = transaction.get_connection(database)
    if connection.in_atomic_block:
        _defer(connection, names, urls, saved)
    else:
        bump(names, urls)
        if saved is not None:
            stamps.restamp(saved)


def bump(names: Sequence[str], urls: Sequence[str] = ()) -> None:
    """Give the names fresh tokens now, then tell the edges; failures never reach the caller.

    Edges hear only of names whose bump landed: purged earlier, an edge would
    refetch the page from Django, which still serves the old entry, and keep
    it. A failed bump is retried; its purges (and the URLs of the sweep) are
    sent when it lands.
    """
    stats.swept(len(names))
    failed = retries.try_bump(names) if names else []
    if failed:
        logger.error(
            "cachesweeper: could not reach the version cache to sweep %s; will retry",
            ", ".join(failed),
        )
        retries.queue.add(failed, urls)
    retries.landed(retries.without(names, failed), () if failed else urls)


class _Pending:
    """Names swept inside one transaction, bumped once on commit."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.names: dict[str, None] = {}
        self.urls: dict[str, None] = {}
        self.saved: list[models.Model] = []

    def waiting(self) -> bool:
        """Still registered for the commit: not run yet, not rolled back."""
        return any(item[1] is self for item in self.connection.run_on_commit)

    def __call__(self) -> None:
        names, urls, self.names, self.urls = list(self.names), list(self.urls), {}, {}
        saved, self.saved = self.saved, []
        bump(names, urls)
        for instance in saved:
            stamps.restamp(instance)


def _defer(
    connection: BaseDatabaseWrapper,
    names: Iterable[str],
    urls: Iterable[str],
    saved: models.Model | None = None,
) -> None:
    pending: _Pending | None = getattr(connection, "_cachesweeper_pending", None)
    # After a rollback (of the transaction or of the savepoint that
    # registered it) Django forgets the callback: start a new batch then.
    if pending is None or not pending.waiting():
        pending = _Pending(connection)
        connection._cachesweeper_pending = pending  # type: ignore[attr-defined]
        transaction.on_commit(pending, using=connection.alias)
        uncommitted.add(pending)
    pending.names.update(dict.fromkeys(names))
    pending.urls.update(dict.fromkeys(urls))
    if saved is not None:
        pending.saved.append(saved)


# -- register() ----------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    using: str | None
    touch: tuple[str, ...]
    tags: Tags | None
    purge_urls: Callable[[Any], Iterable[str]] | None


_registry: dict[type[models.Model], Registration] = {}


@overload
def register(
    model: M,
    *,
    using: str | None = ...,
    touch: Iterable[str] = ...,
    tags: Tags | None = ...,
    purge_urls: Callable[[Any], Iterable[str]] | None = ...,
) -> M: ...


@overload
def register(
    model: None = ...,
    *,
    using: str | None = ...,
    touch: Iterable[str] = ...,
    tags: Tags | None = ...,
    purge_urls: Callable[[Any], Iterable[str]] | None = ...,
) -> Callable[[M], M]: ...


def register(
    model: M | None = None,
    *,
    using: str | None = None,
    touch: Iterable[str] = (),
    tags: Tags | None = None,
    purge_urls: Callable[[Any], Iterable[str]] | None = None,
) -> M | Callable[[M], M]:
    """Sweep ``model``'s instances (and the model) on save, delete and m2m changes.

    ``using``: token strategy for this model (``"counter"`` or an attribute).
    ``touch``: foreign keys whose targets are swept too, cascading through
    their own registrations. ``tags``: extra named tags, a list or a
    callable taking the instance. Works as a class decorator as well.
    """
    if model is None:

        def decorator(model: M) -> M:
            return register(model, using=using, touch=touch, tags=tags, purge_urls=purge_urls)

        return decorator

    touch = tuple(touch)
    for field_name in touch:
        _check_touch(model, field_name)
    _registry[model] = Registration(using, touch, tags, purge_urls)
    tokens.set_strategy(model, using)
    _connect()
    stamps.stamp_instances_of(model)
    if touch:
        uid = f"cachesweeper.post_init.{model._meta.label}"
        post_init.connect(_remember_targets, sender=model, weak=False, dispatch_uid=uid)
    return model


def registrations() -> dict[type[models.Model], Registration]:
    """Every registered model and how it was registered (for the system checks)."""
    return dict(_registry)


def registration_for(model: type[models.Model]) -> Registration | None:
    for klass in model.__mro__:
        if klass in _registry:
            return _registry[klass]
    return None


def _check_touch(model: type[models.Model], field_name: str) -> None:
    try:
        field = model._meta.get_field(field_name)
    except FieldDoesNotExist:
        raise ImproperlyConfigured(
            f"cachesweeper.register({model.__name__}, touch=[{field_name!r}]): "
            f"{model.__name__} has no field {field_name!r}"
        ) from None
    if not (field.many_to_one or field.one_to_one) or field.auto_created:
        raise ImproperlyConfigured(
            f"cachesweeper.register({model.__name__}, touch=[{field_name!r}]): "
            "touch takes the names of ForeignKey or OneToOneField fields"
        )


def _connect() -> None:
    post_save.connect(_on_save, dispatch_uid="cachesweeper.post_save")
    post_delete.connect(_on_save, dispatch_uid="cachesweeper.post_delete")
    m2m_changed.connect(_on_m2m_changed, dispatch_uid="cachesweeper.m2m_changed")


def _remember_targets(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    """Keep the foreign keys an instance was loaded with, to sweep old targets too."""
    registration = registration_for(type(instance))
    if registration is None:
        return
    instance.__dict__["_cachesweeper_loaded"] = {
        name: instance.__dict__.get(instance._meta.get_field(name).attname)  # type: ignore[union-attr]
        for name in registration.touch
    }


def _on_save(sender: Any, instance: models.Model, using: str | None = None, **kwargs: Any) -> None:
    registration = registration_for(type(instance))
    if registration is None:
        return
    try:
        urls: dict[str, None] = {}
        names = _names_to_sweep(instance, registration, using, set(), urls)
        # After a full save (post_save, not post_delete) the instance holds
        # exactly what was committed.
        full_save = "created" in kwargs and not kwargs.get("update_fields")
        sweep(names, database=using, urls=urls, saved=instance if full_save else None)
        if registration.touch:
            _remember_targets(sender, instance)
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
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    try:
        names: list[str] = []
        urls: dict[str, None] = {}
        registration = registration_for(type(instance))
        if registration is not None:
            names += _names_to_sweep(instance, registration, using, set(), urls)
            _touch_relinked(type(instance), [instance.pk], using)
        if registration_for(model) is not None:
            if pk_set is None:  # clear(): find the rows that are about to be unlinked
                pk_set = set(_related_ids(sender, instance, reverse, model, using))
            label = model_name(model)
            names += [f"{label}.{encode(str(pk))}" for pk in pk_set] + [label]
            _touch_relinked(model, list(pk_set), using)
        # clear() and add()/remove() run in a transaction: this waits for its commit.
        sweep(names, database=using, urls=urls)
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
        _touch_attribute(model, ids, attribute, database)
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
) -> list[str]:
    """The instance, its model, its tags, and what it touches, recursively.

    The URLs of every instance met are added to ``urls`` (for URL purges).
    The instance and its model are always swept; extras (tags, touched
    targets) are each best effort, so one failing extra never costs the sweep.
    """
    name = instance_name(instance)
    if name in seen:
        return []
    seen.add(name)
    urls.update(dict.fromkeys(_urls(instance, registration.purge_urls)))
    names = [name, model_name(type(instance))]
    try:
        names += _tag_names(instance, registration.tags)
    except Exception:
        logger.exception("cachesweeper: the tags of %r could not be found", instance)
    for field_name in registration.touch:
        try:
            names += _touched(instance, field_name, database, seen, urls)
        except Exception:
            logger.exception("cachesweeper: could not sweep %r's %s", instance, field_name)
    return names


def _urls(instance: models.Model, purge_urls: Callable[[Any], Iterable[str]] | None) -> list[str]:
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
        _touch_attribute(target_model, ids, attribute, database, lookup)
    names: list[str] = []
    if not needs_instance:
        label = model_name(target_model)
        names += [f"{label}.{encode(str(value))}" for value in ids] + [label]
        if target_registration is not None:
            names += _tag_names(None, target_registration.tags)
        return names
    lookup = field.target_field.attname  # type: ignore[union-attr]
    manager = target_model._base_manager.db_manager(database)
    for target in manager.filter(**{f"{lookup}__in": ids}):
        registration = target_registration or Registration(None, (), None, None)
        names += _names_to_sweep(target, registration, database, seen, urls)
    return names


def _purges_urls(model: type[models.Model], registration: Registration | None) -> bool:
    """Whether an edge will want this model's URLs (worth loading a touched instance for)."""
    has_urls = (registration is not None and registration.purge_urls is not None) or any(
        hasattr(model, method) for method in ("get_purge_urls", "get_absolute_url")
    )
    try:
        return has_urls and bool(configured())
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


def _touch_attribute(
    model: type[models.Model],
    ids: Sequence[Any],
    attribute: str,
    database: str | None,
    lookup: str = "pk",
) -> None:
    """Move the version attribute of rows on with one ``UPDATE`` (attribute strategy)."""
    if not ids:
        return
    field = model._meta.get_field(attribute)
    value: Any
    if isinstance(field, models.DateTimeField):
        value = timezone.now()
    elif isinstance(field, models.IntegerField):
        value = models.F(attribute) + 1
    else:
        raise ImproperlyConfigured(
            f"cachesweeper: {model.__name__}.{attribute} must be a DateTimeField or an "
            "IntegerField to serve as a version attribute"
        )
    manager = model._base_manager.db_manager(database)
    manager.filter(**{f"{lookup}__in": ids}).update(**{attribute: value})
