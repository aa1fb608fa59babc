"""Fragment identity, shared by the Django template tags and the Jinja2 extension."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db.models import Model

from cachesweeper.conf import conf
from cachesweeper.dependencies import Dependency, resolve, untrusted
from cachesweeper.entries import FRAGMENT, Slot, split
from cachesweeper.keys import make_key
from cachesweeper.stamps import loaded_at
from cachesweeper.tokens import attribute_for


def fragment_slot(
    place: str,
    target: Any,
    timeout: Any,
    vary_on: Sequence[Any],
    *,
    using: str | None = None,
    grace: Any = None,
    preview: bool = False,
) -> Slot:
    """The slot of one fragment.

    Its key hashes where the fragment is written (template name and line),
    its dependency names and its vary-on values, so two templates caching
    the same object never share an entry by accident. A fragment on an
    instance built in memory (unsaved, or given a primary key by hand) is
    rendered afresh every time: see :func:`~cachesweeper.dependencies.untrusted`.
    So is every fragment of a ``preview`` (:func:`cachesweeper.safety.is_preview`):
    its instances hold unpublished changes.
    """
    key, dependencies = _identity(place, target, vary_on)
    names, attributes = split(dependencies)
    # Positional, as entries.slot() would: keyword arguments cost more, per item of a list.
    return Slot(
        key, dependencies, timeout, conf.GRACE if grace is None else grace, using, None,
        loaded_at(target), FRAGMENT, preview or untrusted(target), names, attributes,
    )  # fmt: skip


def _identity(place: str, target: Any, vary_on: Sequence[Any]) -> tuple[str, Sequence[Dependency]]:
    """The entry key and the dependencies of a fragment.

    Remembered for a single saved instance, the most common target: a list
    of a hundred asks for a hundred each time. The key holds no version, so
    only an attribute token's value is read afresh.
    """
    pk = target.pk if isinstance(target, Model) else None
    if pk is None:
        dependencies = resolve(target)
        return fragment_key(place, dependencies, vary_on), dependencies
    model = type(target)
    memo = (conf.KEY_PREFIX, place, model, pk, attribute_for(model), *map(str, vary_on))
    found = _identities.get(memo)
    if found is None:
        if len(_identities) >= _IDENTITIES_LIMIT:
            _identities.clear()
        named = tuple(resolve(target))
        found = _identities[memo] = (fragment_key(place, named, vary_on), named)
    key, (dependency,) = found
    if dependency.attribute is not None:
        value = getattr(target, dependency.attribute)
        return key, (Dependency(dependency.name, dependency.attribute, value, dependency.scope),)
    return found


_IDENTITIES_LIMIT = 16_384
_identities: dict[tuple[Any, ...], tuple[str, Sequence[Dependency]]] = {}


def fragment_key(place: str, dependencies: Sequence[Dependency], vary_on: Sequence[Any]) -> str:
    identity = (place, *(f"{dep.name} {dep.scope}" for dep in dependencies))
    return _key(conf.KEY_PREFIX, identity, tuple(map(str, vary_on)))


@functools.lru_cache(maxsize=16_384)
def _key(prefix: str, identity: tuple[str, ...], vary_on: tuple[str, ...]) -> str:
    """Hashing is the costly part of a hit's key; the same fragments come back often."""
    return make_key(prefix, "f", [identity[0], len(identity) - 1, *identity[1:], *vary_on])
