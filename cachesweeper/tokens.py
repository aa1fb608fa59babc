"""Version tokens: the counter and attribute strategies.

A *counter* token is an integer in the version cache, bumped with an atomic
``incr``. A missing counter is created with ``add()`` from a fresh random
seed, never 0 or 1, so a counter that was evicted can never come back at a
value some old entry was stored with. An *attribute* token is read from the
instance itself (e.g. ``updated_at``) and costs no round trip at all.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Mapping

from django.core.cache import BaseCache
from django.db.models import Model

from cachesweeper.conf import conf
from cachesweeper.keys import make_key

COUNTER = "counter"

# Seeds leave 2**32 increments of headroom below the signed 64-bit limit of
# Redis' INCRBY, and start above 2**32 so they are never a small number.
_SEED_LOW = 2**32
_SEED_HIGH = 2**63 - 2**32

_strategies: dict[type[Model], str] = {}


def set_strategy(model: type[Model], using: str | None) -> None:
    """Remember the token strategy ``register(model, using=...)`` asked for."""
    if using is None:
        _strategies.pop(model, None)
    else:
        _strategies[model] = using


def strategy_for(model: type[Model]) -> str:
    """``"counter"`` or the name of the attribute that versions ``model``."""
    for klass in (model, model._meta.concrete_model):
        if klass is not None and klass in _strategies:
            return _strategies[klass]
    return conf.USING


def token_key(name: str) -> str:
    """The version-cache key holding the counter token of dependency ``name``."""
    return _token_key(conf.KEY_PREFIX, name)


@functools.lru_cache(maxsize=65_536)
def _token_key(prefix: str, name: str) -> str:
    return make_key("t", (name,))


def new_seed() -> int:
    return _SEED_LOW + secrets.randbelow(_SEED_HIGH - _SEED_LOW)


def read_counters(cache: BaseCache, names: Iterable[str]) -> dict[str, int]:
    """Current counter tokens of ``names`` in one ``get_many``; missing ones are absent."""
    keys = {token_key(name): name for name in names}
    if not keys:
        return {}
    found = cache.get_many(list(keys))
    return {keys[key]: value for key, value in found.items() if isinstance(value, int)}


def create_counters(cache: BaseCache, names: Iterable[str]) -> dict[str, int]:
    """Create missing counters from fresh seeds and return their values.

    ``add`` never overwrites: if another process created a counter first, its
    value is read back instead, so everyone agrees on one token.
    """
    created: dict[str, int] = {}
    lost: list[str] = []
    for name in names:
        seed = new_seed()
        if cache.add(token_key(name), seed, timeout=None):
            created[name] = seed
        else:
            lost.append(name)
    if lost:
        created.update(read_counters(cache, lost))
    return created


def bump(cache: BaseCache, name: str) -> int | None:
    """Atomically move the counter of ``name`` on; ``None`` if it does not exist.

    A missing counter needs no bump: nothing stored against it can be valid,
    because it will be recreated from a fresh random seed.
    """
    try:
        value = cache.incr(token_key(name))
    except ValueError:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        # pymemcache's HashClient answers False, without raising, while it
        # considers the server dead: that bump did not happen.
        raise ConnectionError(f"the version cache did not bump {name!r} (answered {value!r})")
    return value


def tokens_match(stored: Mapping[str, object], current: Mapping[str, object]) -> bool:
    """True when every stored token is present and equal in ``current``."""
    return all(name in current and current[name] == token for name, token in stored.items())
