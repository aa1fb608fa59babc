"""Version tokens: the counter and attribute strategies.

A *counter* token is a number in the version cache. A sweep replaces it with
a fresh one, for any number of dependencies in one ``set_many``: the time of
the sweep in microseconds, 10 random bits, and a low bit that marks it as a
sweep. A missing counter is created with ``add()`` from a fresh value too, so
a counter that was evicted can never come back at a value some old entry was
stored with, and a missing token is always a miss. Knowing when a dependency
was last swept lets a request refuse to store content built from data it may
have loaded before that sweep (see :func:`swept_at`).

An *attribute* token is read from the instance itself (e.g. ``updated_at``)
and costs no round trip at all.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.cache import BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models import DateTimeField, F, IntegerField, Model
from django.dispatch import receiver
from django.utils import timezone

from cachesweeper import reads, writes
from cachesweeper.conf import conf
from cachesweeper.keys import make_key

COUNTER = "counter"

_strategies: dict[type[Model], str] = {}


def set_strategy(model: type[Model], strategy: str | None) -> None:
    """Remember the token strategy ``register(model, using=...)`` asked for.

    ``None`` forgets it: the model then follows the configured ``USING``.
    """
    if strategy is None:
        _strategies.pop(model, None)
    else:
        _strategies[model] = strategy
    forget_attributes()


def forget_attributes() -> None:
    """Strategies or ``USING`` changed: work out every model's attribute afresh."""
    _attributes.clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHESWEEPER":  # ``USING`` may have changed
        forget_attributes()


def strategy_for(model: type[Model]) -> str:
    """``"counter"`` or the name of the attribute that versions ``model``.

    The nearest registered class decides, as for the registration itself: a
    proxy or a multi-table child follows its parent's ``using=``.
    """
    for klass in model.__mro__:
        if klass in _strategies:
            return _strategies[klass]
    return conf.USING


def attribute_for(model: type[Model]) -> str | None:
    """The attribute that versions ``model``'s instances, or ``None`` for counters.

    A strategy naming an attribute the model does not have (a site-wide
    ``USING = "updated_at"``) means counters for it, as its fragments use.
    Remembered per model: every fragment on an instance asks.
    """
    try:
        return _attributes[model]
    except KeyError:
        pass
    strategy = strategy_for(model)
    attribute = None if strategy == COUNTER or not hasattr(model, strategy) else strategy
    _attributes[model] = attribute
    return attribute


_attributes: dict[type[Model], str | None] = {}


def token_key(name: str) -> str:
    """The version-cache key holding the counter token of dependency ``name``."""
    return _token_key(conf.KEY_PREFIX, name)


@functools.lru_cache(maxsize=65_536)
def _token_key(prefix: str, name: str) -> str:
    return make_key(prefix, "t", (name,))


def new_token(swept: bool) -> int:
    """A fresh token: microseconds since the epoch, random bits, and the sweep flag.

    Below 2**63 (Redis' and memcached's integers) until the year 2112; never 0 or 1.
    """
    microseconds = time.time_ns() // 1000
    return (microseconds << 11) | (secrets.randbits(10) << 1) | int(swept)


def made_at(token: int) -> float:
    """When ``token`` was made, by a sweep or by creating a missing counter (epoch seconds)."""
    return (token >> 11) / 1_000_000


def swept_at(token: int) -> float | None:
    """When the sweep that set ``token`` happened (epoch seconds); ``None`` if not a sweep."""
    return made_at(token) if token & 1 else None


def read_counters(cache: BaseCache, names: Iterable[str]) -> dict[str, int]:
    """Current counter tokens of ``names`` in one ``get_many``; missing ones are absent."""
    keys = {token_key(name): name for name in names}
    if not keys:
        return {}
    found = reads.get_many(cache, list(keys))
    return {keys[key]: value for key, value in found.items() if isinstance(value, int)}


def create_counters(cache: BaseCache, names: Iterable[str]) -> dict[str, int]:
    """Create missing counters from fresh tokens and return their values.

    ``add`` never overwrites: if another process created a counter first, its
    value is read back instead, so everyone agrees on one token.
    """
    wanted = {token_key(name): (name, new_token(swept=False)) for name in names}
    values = {key: token for key, (_, token) in wanted.items()}
    added = writes.add_many(cache, values, None)  # one round trip where the client can
    created = {wanted[key][0]: values[key] for key in added}
    lost = [name for name, _ in wanted.values() if name not in created]
    if lost:
        created.update(read_counters(cache, lost))
    return created


def bump(cache: BaseCache, names: Iterable[str]) -> list[str]:
    """Give every name a fresh token in one ``set_many``; return the names not stored.

    Stored without expiry (``None``: a timeout of 0 would mean "do not store").
    """
    keys = {token_key(name): name for name in names}
    if not keys:
        return []
    failed = writes.set_many(cache, {key: new_token(swept=True) for key in keys}, None)
    return [keys[key] for key in failed]


def move_attribute(
    model: type[Model],
    ids: Sequence[Any],
    attribute: str,
    database: str | None,
    lookup: str = "pk",
) -> None:
    """Move the version attribute of rows on with one ``UPDATE`` (the attribute strategy's bump).

    A ``DateTimeField`` is set to now, an ``IntegerField`` incremented; the
    rows are those whose ``lookup`` field is in ``ids``.
    """
    if not ids:
        return
    field = model._meta.get_field(attribute)
    value: Any
    if isinstance(field, DateTimeField):
        value = timezone.now()
    elif isinstance(field, IntegerField):
        value = F(attribute) + 1
    else:
        raise ImproperlyConfigured(
            f"cachesweeper: {model.__name__}.{attribute} must be a DateTimeField or an "
            "IntegerField to serve as a version attribute"
        )
    manager = model._base_manager.db_manager(database)
    manager.filter(**{f"{lookup}__in": ids}).update(**{attribute: value})


def tokens_match(stored: Mapping[str, object], current: Mapping[str, object]) -> bool:
    """True when every stored token is present and equal in ``current``."""
    # Every (name, token) pair stored is among the current ones; stored tokens
    # are integers, never None. The items views compare in C, on every hit.
    return stored.items() <= current.items()
