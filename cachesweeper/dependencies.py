"""What cached content depends on, and the one canonical name of each.

A dependency is a model instance (``blog.article.42``), a model class
(``blog.article``), a named tag (``frontpage``) or a field dependency, the
rows with one value in one field (``blog.comment.article=42``, see
:mod:`cachesweeper.fields`). The same name keys its
token in the cache and tags content for edge caches, so it must be
header-safe: anything outside letters, digits and ``._~:/-`` is
percent-encoded (UTF-8), which is lossless, so two different tags never
share a name.

Tags and models share one namespace on purpose, as surrogate keys do on
the edges: a tag spelled like a model's name (``"blog.article"``) *is* that
model's dependency, swept by every save of an article, and
``invalidate_tag("blog.article")`` does what ``invalidate_model`` does. A
name never collides with a cache key: token keys are hashes of the name
under the library's prefix, whatever the name looks like.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import quote

from django.db.models import Field, Model, QuerySet
from django.db.models.lookups import Exact, In
from django.db.models.sql.where import AND, WhereNode

from cachesweeper.registry import tracked_fields
from cachesweeper.tokens import attribute_for

_SAFE = "._~:/-"
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + _SAFE)


class Dependency(NamedTuple):
    """One dependency of a fragment or page.

    ``attribute`` is set when the token is read from the instance (the
    attribute strategy); ``value`` is then the attribute's value. ``scope``
    only distinguishes entries (the SQL of a QuerySet), it is never swept.
    """

    name: str
    attribute: str | None = None
    value: Any = None
    scope: str = ""


def encode(text: str) -> str:
    """Make ``text`` header-safe, losslessly. The empty tag is named ``%``."""
    if text and _PLAIN.issuperset(text):
        return text
    return quote(text, safe=_SAFE, errors="surrogatepass") or "%"


def model_name(model: type[Model]) -> str:
    """``app_label.modelname`` of the concrete model (proxies share their rows' name)."""
    name = _model_names.get(model)
    if name is None:
        concrete = model._meta.concrete_model or model
        name = _model_names[model] = concrete._meta.label_lower
    return name


_model_names: dict[type[Model], str] = {}


def instance_name(instance: Model) -> str:
    pk = instance.pk
    if pk is None:
        raise ValueError(f"{instance!r} is not saved; an unsaved instance has no dependency name")
    return name_with_pk(type(instance), pk)


def levels(model: type[Model]) -> list[type[Model]]:
    """The concrete models whose tables hold a row of ``model``: itself, then its parents.

    A proxy is its concrete model; multi-table inheritance adds each concrete
    parent, so a save of a child reaches content on its parents' rows.
    """
    found = _levels.get(model)
    if found is None:
        concrete = model._meta.concrete_model or model
        parents = [
            parent._meta.concrete_model or parent for parent in concrete._meta.get_parent_list()
        ]
        found = _levels[model] = list(dict.fromkeys([concrete, *parents]))
    return found


_levels: dict[type[Model], list[type[Model]]] = {}


def hierarchy_names(instance: Model) -> list[str]:
    """The instance's name at every level of its model (:func:`levels`), child first.

    Each level names the row by its own primary key (the same value, except for
    the second parent of a model with several).
    """
    instance_name(instance)  # an unsaved instance has no names
    return [
        name_with_pk(level, getattr(instance, level._meta.pk.attname))
        for level in levels(type(instance))
    ]


def names_for_pks(model: type[Model], pks: Iterable[Any]) -> list[str]:
    """Instance names of ``model``'s rows ``pks`` at the levels that share their primary key.

    Those are the parents reached through the primary key's parent link (all
    of them under single inheritance), so no query is needed.
    """
    values = list(pks)
    return [name_with_pk(level, pk) for level in pk_levels(model) for pk in values]


def pk_levels(model: type[Model]) -> list[type[Model]]:
    """The levels of ``model`` (:func:`levels`) whose rows share its primary key's value:
    the parents reached through the primary key's parent link.
    """
    chain = [levels(model)[0]]
    while (
        (link := chain[-1]._meta.pk) is not None
        and link.remote_field
        and link.remote_field.parent_link
    ):
        chain.append(link.remote_field.model._meta.concrete_model)
    return chain


def model_names(model: type[Model]) -> list[str]:
    """The model-level names of ``model`` and of each concrete parent."""
    return [model_name(level) for level in levels(model)]


def every_row_names(model: type[Model]) -> list[str]:
    """``blog.comment.*`` for ``model`` and each concrete parent: every row of it.

    Content on field dependencies depends on it too. Ordinary saves sweep the
    field dependencies of the values they wrote; a sweep that cannot know the
    values (``invalidate_model``, a ``touch`` past its limit) sweeps this.
    At the edges it is the tag every response with an instance of the model
    carries.
    """
    return [f"{model_name(level)}.*" for level in levels(model)]


def name_with_pk(model: type[Model], pk: Any) -> str:
    """The name of ``model``'s row ``pk``, without loading it."""
    return f"{model_name(model)}.{pk if type(pk) is int else encode(str(pk))}"


def field_name(field: Field[Any, Any], value: Any) -> str:
    """The field dependency of ``field`` holding ``value``: ``blog.comment.article=42``.

    ``=`` never appears in the other names (encoded as ``%3D`` there), so
    this spelling cannot collide with them. The value is encoded like a tag;
    ``None`` is spelled as nothing, the empty string as ``%``.
    """
    owner = field.model._meta.concrete_model or field.model
    if isinstance(value, Model):
        value = value.pk
    if value is None:
        return f"{model_name(owner)}.{field.name}="
    target = field.target_field if field.is_relation else field  # type: ignore[attr-defined]
    value = target.to_python(value)
    text = str(value) if type(value) is int else encode(str(value))
    return f"{model_name(owner)}.{field.name}={text}"


def tag_name(tag: str) -> str:
    return encode(tag)


def name_of(obj: Any) -> str:
    """The canonical name of a single instance, model class or tag."""
    if isinstance(obj, Model):
        return instance_name(obj)
    if isinstance(obj, type) and issubclass(obj, Model):
        return model_name(obj)
    if isinstance(obj, str):
        return tag_name(obj)
    raise TypeError(
        f"cachesweeper cannot depend on {obj!r}: use a model instance, a model class, "
        "a QuerySet, a string tag, or a list of these"
    )


def resolve(obj: Any) -> list[Dependency]:
    """The dependencies of ``obj``: an instance, model class, QuerySet, tag or list of them.

    A QuerySet depends on a field dependency of its selection when one can
    be read (:func:`selection_names`), else on its model; it is never
    evaluated here. ``None`` (a
    null foreign key) is no dependency at all: content is then cached on the
    other dependencies, or on its timeout alone, rather than breaking a page.
    """
    if obj is None:
        return []
    if isinstance(obj, Model):
        return [_instance_dependency(obj)]
    if isinstance(obj, QuerySet):
        scope = _query_scope(obj)
        fields = selection_names(obj)
        if fields is not None:
            every_row = f"{model_name(obj.model)}.*"
            return [Dependency(name, scope=scope) for name in [*fields, every_row]]
        return [Dependency(model_name(obj.model), scope=scope)]
    if isinstance(obj, (list, tuple)):
        return [dep for item in obj for dep in resolve(item)]
    return [Dependency(name_of(obj))]


def untrusted(obj: Any) -> bool:
    """Whether ``obj`` is, or lists, an instance not known to match its row.

    An instance is trusted when this process loaded it from the database or
    saved it: Django's own ``_state.adding`` is then false, for every model,
    at no cost. One built in memory is not: without a primary key it has no
    identity (two would share one entry); with one (a draft, a preview, a
    revision) it may show what its row does not, and must not be stored
    under the row's key nor served the row's entry.
    """
    if isinstance(obj, Model):
        return obj._state.adding or obj.pk is None
    if isinstance(obj, (list, tuple)):
        return any(untrusted(item) for item in obj)
    return False


def names(dependencies: Iterable[Dependency]) -> list[str]:
    """Names in first-seen order, without repeats."""
    return list(dict.fromkeys(dep.name for dep in dependencies))


def _instance_dependency(instance: Model) -> Dependency:
    if instance.pk is None:
        # Nothing can sweep an unsaved instance; depend on its model instead (saving
        # it sweeps that). Fragments on one are never read nor stored (see untrusted()).
        return Dependency(model_name(type(instance)))
    name = instance_name(instance)
    attribute = attribute_for(type(instance))
    if attribute is not None:
        return Dependency(name, attribute=attribute, value=getattr(instance, attribute))
    return Dependency(name)


def _query_scope(queryset: QuerySet[Any]) -> str:
    try:
        return str(queryset.query)
    except Exception:  # an empty .none() query cannot be compiled
        return repr(queryset.query.where)


#: At most this many values in one ``__in``: past it, the QuerySet depends on its model.
IN_LIMIT = 10


def selection_names(queryset: QuerySet[Any]) -> list[str] | None:
    """The field dependencies of ``queryset``'s selection, or ``None`` (its model, then).

    One equality condition on a tracked field of its model (``filter(article=a)``,
    ``article.comments.all()``, ``__in`` with up to :data:`IN_LIMIT` values: a
    name per value), the one with the fewest values, foreign keys first. A
    row entering, leaving or changing inside the selection has that value
    before or after the write, so one name is enough. Anything else
    (``exclude``, ``|``, a range, a condition through a join, a union, a
    subquery) gives ``None``: never a missed sweep.
    """
    fields = tracked_fields(queryset.model)
    if not fields:
        return None
    query = queryset.query
    where = query.where
    if query.combinator or not isinstance(where, WhereNode) or where.negated:
        return None
    if where.connector != AND and len(where.children) > 1:
        return None
    base = query.base_table
    best: tuple[tuple[int, int], list[str]] | None = None
    for condition in where.children:
        found = _condition(condition, fields, base)
        if found is not None and (best is None or found[0] < best[0]):
            best = found
    return None if best is None else best[1]


def _condition(
    condition: Any, fields: tuple[Field[Any, Any], ...], base: str | None
) -> tuple[tuple[int, int], list[str]] | None:
    """``field = value`` or ``field IN (values)`` on the base table: its rank and its names."""
    if not isinstance(condition, (Exact, In)):
        return None
    column = condition.lhs
    target = getattr(column, "target", None)
    if target not in fields or getattr(column, "alias", None) != base:
        return None
    if isinstance(condition, In):
        if not isinstance(condition.rhs, (list, tuple, set, frozenset)):
            return None  # a subquery
        values = list(condition.rhs)
    else:
        values = [condition.rhs]
    if not values or len(values) > IN_LIMIT:
        return None
    if any(hasattr(value, "resolve_expression") for value in values):
        return None  # F(), a subquery, an expression: not one value
    try:
        names = [field_name(target, value) for value in values]
    except Exception:  # a value the field cannot read back: depend on the model
        return None
    return (len(values), 0 if target.is_relation else 1), names
