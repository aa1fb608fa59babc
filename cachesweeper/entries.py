"""Entries and the read path shared by fragments and pages.

An entry's key holds no version: it is a hash of the entry's identity. The
token vector the payload was built against is stored *inside* the entry, so
one ``get_many`` fetches the entry and the current counter tokens together,
and a comparison decides hit, stale or miss. A hit costs one round trip and
writes nothing; one key per fragment means no dead versions pile up, and a
stale copy stays at hand for grace.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.core.cache import BaseCache, InvalidCacheBackendError

from cachesweeper import (
    backends,
    collector,
    outages,
    reads,
    retries,
    signals,
    stats,
    tokens,
    uncommitted,
)
from cachesweeper.conf import conf
from cachesweeper.dependencies import Dependency

logger = logging.getLogger("cachesweeper")

HIT = "hit"
STALE = "stale"
MISS = "miss"

_FORMAT = "cs1"
_POLL = 0.05
_KNOWN_LIMIT = 10_000

# Entry key -> counter names its entry was last seen to depend on. Names that
# inner fragments contributed are only learnt from the entry itself; knowing
# them in advance lets the next read fetch their tokens in the same
# ``get_many`` as the entry. A hint only: validation always uses the entry.
_known: dict[str, frozenset[str]] = {}


class Entry(NamedTuple):
    payload: Any
    counters: dict[str, int]
    attributes: dict[str, Any]
    fresh_until: float | None
    stale_since: float | None = None

    def dump(self) -> tuple[Any, ...]:
        return (_FORMAT, *self)

    @classmethod
    def load(cls, raw: object) -> Entry | None:
        if isinstance(raw, tuple) and len(raw) == 6 and raw[0] == _FORMAT:
            return cls(*raw[1:])
        return None


@dataclass(slots=True)
class Slot:
    """One fragment or page being looked up, and what the lookup found."""

    key: str
    dependencies: Sequence[Dependency]
    timeout: float | None
    grace: float = 0
    entry: Entry | None = None
    state: str = MISS
    counters: dict[str, int] = field(default_factory=dict)
    using: str | None = None
    store: Any = None  # a cache object to use instead of the ``using`` alias
    _backend: BaseCache | None = field(default=None, repr=False)
    raw: Any = None
    locked: bool = False
    contended: bool = False
    cache_down: bool = False
    loaded_at: float | None = None  # when the instances it depends on were loaded
    quiet: bool = False  # an entry that only speeds up others (a list entry): not announced
    copy: Entry | None = None  # this process's copy of the entry (see copies.py), tried first
    unsaved: bool = False  # depends on an instance with no primary key: never read nor stored

    @property
    def cache(self) -> BaseCache:
        """The entry cache; looked up once per slot (``caches[...]`` is not free)."""
        if self.store is not None:
            return self.store  # type: ignore[no-any-return]
        if self._backend is None:
            self._backend = backends.backend(self.using or conf.CACHE)
        return self._backend

    counter_names: list[str] = field(init=False)
    attributes: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.counter_names, self.attributes = [], {}
        for dep in self.dependencies:  # one pass: a slot is made for every fragment
            if dep.attribute is None:
                self.counter_names.append(dep.name)
            else:
                self.attributes[dep.name] = dep.value

    @property
    def lock_key(self) -> str:
        return f"{self.key}:lock"

    def seen_tokens(self) -> dict[str, int | None]:
        """What this slot reports to the enclosing frame when served from its entry."""
        assert self.entry is not None
        seen: dict[str, int | None] = dict(self.entry.counters)
        for name in self.attributes:
            seen.setdefault(name, self.counters.get(name))
        return seen

    def declared_tokens(self) -> dict[str, int | None]:
        """Current tokens of the declared dependencies (``None`` where unknown)."""
        return {dep.name: self.counters.get(dep.name) for dep in self.dependencies}


def version_cache() -> BaseCache:
    return backends.backend(conf.VERSION_CACHE)


class Rendered(NamedTuple):
    """What rendering produced: the value for the caller and the payload to store."""

    value: Any
    payload: Any = None  # None: do not store (an uncacheable page)
    failed: bool = False  # a bad result (a 5xx page): a stale entry is better, if allowed


def serve(slots: Sequence[Slot], render: Callable[[int], Rendered]) -> list[tuple[str, Any]]:
    """Return ``(state, value)`` for each slot: its stored payload, or what ``render`` made.

    Every slot reports its dependencies to the enclosing frame, hit or miss.
    A render that raises (or fails) falls back to a stale entry while grace
    allows and never overwrites it; regeneration locks are always released.
    """
    unsaved = any(slot.unsaved for slot in slots)
    identified = [slot for slot in slots if not slot.unsaved] if unsaved else slots
    if identified:
        lookup(identified)
    results: list[tuple[str, Any]] = []
    to_save: list[tuple[Slot, Any, collector.Frame]] = []
    try:
        for index, slot in enumerate(slots):
            if slot.unsaved:
                results.append(render_unsaved(slot, render, index))
                continue
            if slot.contended and wait_for_entry(slot):
                results.append(served(slot))
                continue
            if slot.state != MISS:
                results.append(served(slot))
                continue
            announce(slot, MISS)
            with collector.collect() as frame:
                try:
                    outcome = render(index)
                except Exception as error:
                    results.append(fall_back(slot, error))
                    continue
            results.append(accept(slot, outcome, frame, to_save))
        if to_save:
            save(to_save)
    finally:
        release(slots)
    return results


def render_unsaved(slot: Slot, render: Callable[[int], Rendered], index: int) -> tuple[str, Any]:
    """Render a fragment on an unsaved instance: nothing can key or sweep it.

    What encloses it (a fragment, a list entry, a page) shows it too, so it
    is not stored either.
    """
    announce(slot, MISS)
    with collector.collect():
        outcome = render(index)
    collector.spoil()
    return MISS, outcome.value


def served(slot: Slot) -> tuple[str, Any]:
    """Serve a slot from its entry (a hit, or stale during grace)."""
    assert slot.entry is not None
    announce(slot, slot.state)
    if collector.current() is not None:
        collector.report(slot.seen_tokens())
    return slot.state, slot.entry.payload


def fall_back(slot: Slot, error: Exception) -> tuple[str, Any]:
    """A re-render raised: serve the stale entry while grace allows, else re-raise."""
    if not can_serve_stale(slot):
        raise error
    logger.error("cachesweeper: re-render failed, serving the stale entry", exc_info=error)
    keep_stale(slot)
    slot.state = STALE
    return served(slot)


def accept(
    slot: Slot,
    outcome: Rendered,
    frame: collector.Frame,
    to_save: list[tuple[Slot, Any, collector.Frame]],
) -> tuple[str, Any]:
    """Take a fresh render: queue its payload for storing, or prefer the stale entry."""
    if outcome.failed and can_serve_stale(slot):
        logger.warning("cachesweeper: re-render gave a bad result, serving the stale entry")
        keep_stale(slot)
        slot.state = STALE
        return served(slot)
    collector.report(slot.declared_tokens())
    if outcome.payload is not None:
        to_save.append((slot, outcome.payload, frame))
    return MISS, outcome.value


def wait_for_entry(slot: Slot) -> bool:
    """A cold miss that another request is already rendering: wait briefly for its entry."""
    deadline = time.monotonic() + conf.COLD_WAIT
    while time.monotonic() < deadline:
        time.sleep(_POLL)
        lookup([slot], lock=False)
        if slot.state == HIT or slot.cache_down:
            return slot.state == HIT
    return False


async def await_entry(slot: Slot) -> bool:
    """:func:`wait_for_entry` for async views, without blocking the event loop."""
    deadline = time.monotonic() + conf.COLD_WAIT
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL)
        lookup([slot], lock=False)
        if slot.state == HIT or slot.cache_down:
            return slot.state == HIT
    return False


def lookup(slots: Sequence[Slot], lock: bool = True) -> None:
    """Fetch the entries of ``slots`` and the tokens they need, and decide each state.

    One ``get_many`` when entries and tokens share a cache alias (two when
    they do not). Missing counters are created only when something will be
    stored.

    A nested (Russian-doll) entry is the exception: the names its inner
    fragments contributed are stored only inside the entry, so the first
    time a process meets it, their tokens take a second ``get_many`` (two
    round trips for that one hit). The process then remembers them, and
    every later hit is one read again. No single read can do better on
    every backend: the token keys to fetch are only known once the entry
    has been read.

    Slots that carry this process's copy of their entry (the WSGI page
    cache's, see ``copies.py``) try it first, reading only its tokens.
    """
    untrusted = _untrusted()
    try:
        if slots[0].copy is not None and _copies_hit(slots, untrusted):
            return
        needed = _needed(slots)
        found, counters = _fetch(slots[0], [slot.key for slot in slots], needed)
        if not untrusted and _all_plain_hits(slots, found, counters):
            return
        _complete(slots, found, counters, needed)
    except InvalidCacheBackendError:
        raise  # a ``using=`` naming no cache is a mistake to fix, not an outage
    except Exception as error:
        outages.report(_read_caches(slots[0]), "rendering uncached", error)
        for slot in slots:
            slot.cache_down = True
            slot.state = MISS
        return

    if untrusted:
        _distrust(slots, untrusted)
    now = time.time()
    won: list[Slot] = []
    for slot in slots:
        if slot.cache_down:
            continue
        slot.raw = found.get(slot.key)
        slot.counters = counters
        slot.state = _evaluate(slot, counters, now)
        if not lock or slot.grace <= 0:
            continue
        if slot.state == STALE and _lock(slot):
            won.append(slot)
        elif slot.entry is None and conf.COLD_WAIT > 0:
            # A cold miss: whoever gets the lock renders, the others may wait for it.
            slot.contended = not _lock(slot)
            if slot.locked:
                won.append(slot)
    if won:
        _recheck(won)


def _needed(slots: Sequence[Slot]) -> dict[str, None]:
    """The counter names to read with the entries of ``slots``, in order."""
    wants = collector.wants_tokens()
    needed: dict[str, None] = {}
    for slot in slots:
        for name in slot.counter_names:
            needed[name] = None
        if wants:
            for name in slot.attributes:
                needed[name] = None
        for name in _known.get(slot.key, ()):
            needed[name] = None
    return needed


def _untrusted() -> frozenset[str]:
    """Names whose tokens cannot be trusted here: their sweep has not landed yet.

    Either the bump is being retried (``retries.queue.unconfirmed``), or it waits
    for the commit of a transaction this very code runs in, which must see
    its own writes.
    """
    waiting = uncommitted.names()
    unconfirmed = retries.queue.unconfirmed
    if not waiting:
        return unconfirmed
    return waiting | unconfirmed


def _copies_hit(slots: Sequence[Slot], untrusted: frozenset[str]) -> bool:
    """Serve every slot from its copy when the copies' tokens are still current.

    Reads only those tokens. If any copy is out of date (a token moved or is
    missing, the copy expired) or a sweep is pending, the copies are
    forgotten and the ordinary read decides, one more round trip.
    """
    if untrusted or any(slot.copy is None for slot in slots):
        return _forget_copies(slots)
    names = {name: None for slot in slots for name in slot.copy.counters}  # type: ignore[union-attr]
    counters = tokens.read_counters(version_cache(), names)
    now = time.time()
    for slot in slots:
        slot.entry = slot.copy
        if _evaluate(slot, counters, now) != HIT:
            return _forget_copies(slots)
    for slot in slots:
        slot.counters, slot.state = counters, HIT
    return True


def _forget_copies(slots: Sequence[Slot]) -> bool:
    for slot in slots:
        slot.copy = slot.entry = None
    return False


def _all_plain_hits(
    slots: Sequence[Slot], found: Mapping[str, Any], counters: dict[str, int]
) -> bool:
    """Settle the common case with the least work: every entry valid and fresh.

    Anything else (an entry naming counters that were not read, a pending
    sweep, a stale or missing entry, an entry this process has not met) is
    left to the general path, which decides every slot again.
    """
    now = time.time()
    for slot in slots:
        if slot.key not in _known:
            return False
        slot.entry = Entry.load(found.get(slot.key))
        # Counters that were not read are absent from ``counters``: no hit.
        if _evaluate(slot, counters, now) != HIT:
            return False
    for slot in slots:
        slot.raw, slot.counters, slot.state = found.get(slot.key), counters, HIT
    return True


def _complete(
    slots: Sequence[Slot],
    found: Mapping[str, Any],
    counters: dict[str, int],
    needed: dict[str, None],
) -> None:
    """Load the entries; read the counters only they name; create missing declared ones."""
    more: dict[str, None] = {}
    for slot in slots:
        slot.entry = entry = Entry.load(found.get(slot.key))
        if entry is not None:
            unknown = [name for name in entry.counters if name not in needed]
            if unknown:
                more.update(dict.fromkeys(unknown))
            if unknown or slot.key not in _known:
                _remember(slot.key, entry.counters)
    if more:
        counters.update(tokens.read_counters(version_cache(), more))
    missing = [name for name in needed if name not in counters]
    if missing:
        declared = {dep.name for slot in slots for dep in slot.dependencies}
        missing = [name for name in missing if name in declared]
    if missing:
        counters.update(tokens.create_counters(version_cache(), missing))
        if any(name not in counters for name in missing):
            # Some clients answer "not stored" instead of raising while
            # they consider the server dead.
            raise ConnectionError("the version cache did not keep new counters")


def _distrust(slots: Sequence[Slot], untrusted: frozenset[str]) -> None:
    """Slots depending on a sweep that has not landed yet are rendered, not served or stored.

    If that sweep is being retried, the cache answers again: retry it at once.
    """
    for slot in slots:
        names = {dep.name for dep in slot.dependencies}
        if slot.entry is not None:
            names.update(slot.entry.counters)
        if not untrusted.isdisjoint(names):
            slot.cache_down = True
            slot.state = MISS
    if retries.queue.unconfirmed:
        retries.queue.poke()


def _recheck(won: list[Slot]) -> None:
    """Read again after winning a lock: the previous holder may have just stored it.

    Without this, a request that read the stale entry just before another
    request stored the new one, and locked just after that one released,
    would render the page a second time.
    """
    lookup(won, lock=False)
    for slot in won:
        if slot.state == HIT or slot.cache_down:
            release([slot])
        else:
            slot.state = MISS  # this request renders; a stale entry is its fallback


def save(slots: Sequence[tuple[Slot, Any, collector.Frame]]) -> None:
    """Store freshly rendered payloads, each against the tokens it was built from.

    Content whose tokens are incomplete (the cache was down for an inner
    fragment) or inconsistent (a sweep happened mid-render) is not stored,
    nor is content that may show older data under a newer token (see
    :func:`_predates_a_sweep`); what encloses such content is not stored either.
    """
    now = time.time()
    request_started = collector.request_started_at()
    timeout: float | None
    batch: dict[float | None, dict[str, Any]] = {}
    for slot, payload, frame in slots:
        if slot.cache_down or not frame.complete:
            continue
        declared = {name: slot.counters[name] for name in slot.counter_names}
        counters = {**declared}
        counters.update((name, token) for name, token in frame.tokens.items() if token is not None)
        if _predates_a_sweep(slot.loaded_at, declared, request_started, counters):
            collector.spoil()  # the enclosing fragment or page shows this content too
            continue
        if slot.timeout is not None and slot.timeout <= 0:
            continue
        if slot.timeout is None:
            fresh_until, timeout = None, None
        else:
            fresh_until, timeout = now + slot.timeout, slot.timeout + slot.grace
        entry = Entry(payload, counters, slot.attributes, fresh_until)
        batch.setdefault(timeout, {})[slot.key] = entry.dump()
        _remember(slot.key, counters)
    if not slots:
        return
    cache = slots[0][0].cache
    for timeout, values in batch.items():
        _safely(slots[0][0], cache.set_many, values, timeout)
    release([slot for slot, _, _ in slots])


def release(slots: Sequence[Slot]) -> None:
    """Give up the regeneration locks held for ``slots`` (always, even after an error)."""
    held = [slot for slot in slots if slot.locked]
    if held:
        _safely(held[0], held[0].cache.delete_many, [slot.lock_key for slot in held])
        for slot in held:
            slot.locked = False


def keep_stale(slot: Slot) -> None:
    """A regeneration failed: keep serving the stale entry, for ``grace`` seconds at most."""
    entry = slot.entry
    assert entry is not None
    if entry.stale_since is None:
        marked = entry._replace(stale_since=time.time())
        _safely(slot, slot.cache.set, slot.key, marked.dump(), max(1, int(slot.grace)))
    release([slot])


def can_serve_stale(slot: Slot) -> bool:
    """Whether a failed regeneration may fall back to the slot's stale entry."""
    if slot.entry is None or slot.grace <= 0:
        return False
    since = _stale_since(slot.entry, time.time())
    return since is None or time.time() < since + slot.grace


_SIGNALS = {HIT: signals.fragment_hit, STALE: signals.fragment_stale, MISS: signals.fragment_miss}


def announce(slot: Slot, state: str) -> None:
    """Count the serve and send the matching signal, only when somebody listens."""
    if slot.quiet:
        return
    stats.SERVED[state] += 1
    signal = _SIGNALS[state]
    if signal.receivers:
        names = list(slot.entry.counters) if state != MISS and slot.entry else []
        names += [dep.name for dep in slot.dependencies if dep.name not in names]
        signal.send(sender=Slot, key=slot.key, dependencies=names)


def _fetch(
    slot: Slot, keys: list[str], names: Mapping[str, None]
) -> tuple[dict[str, Any], dict[str, int]]:
    if not names and len(keys) == 1:
        # One entry and no counter (attribute tokens): a plain get, as Django's own tag.
        value = reads.get(slot.cache, keys[0])
        return ({} if value is None else {keys[0]: value}), {}
    if slot.store is None and (slot.using or conf.CACHE) == conf.VERSION_CACHE:
        token_keys = {tokens.token_key(name): name for name in names}
        found = reads.get_many(slot.cache, [*keys, *token_keys])
        counters = {
            token_keys[key]: value
            for key, value in found.items()
            if key in token_keys and isinstance(value, int)
        }
        return found, counters
    found = reads.get_many(slot.cache, keys)
    return found, tokens.read_counters(version_cache(), names) if names else {}


def _predates_a_sweep(
    loaded_at: float | None,
    declared: Mapping[str, int],
    request_started: float | None,
    counters: Mapping[str, int],
) -> bool:
    """Whether content may show data older than the tokens it would be stored against.

    A request's data is loaded after it began: no dependency of the content
    (declared or rendered inside) may have been swept since. Outside a
    request, the instances a fragment is *on* are judged by their own load
    time against their own tokens; fragments rendered inside it judged
    themselves when they rendered (and spoil what encloses them), so a list
    of items loaded one by one is stored once each item is current.
    """
    if request_started is not None and _swept_since(counters, request_started):
        return True
    return loaded_at is not None and _swept_since(declared, loaded_at)


def _swept_since(counters: Mapping[str, int], started: float) -> bool:
    """A dependency was swept after ``started``: data loaded then may predate the sweep.

    Sweep times come from the sweeping server's clock: keep clocks in sync.
    """
    for token in counters.values():
        moment = tokens.swept_at(token)
        if moment is not None and moment >= started:
            logger.debug("cachesweeper: not storing content built before a sweep")
            return True
    return False


def _evaluate(slot: Slot, counters: Mapping[str, int], now: float) -> str:
    entry = slot.entry
    if entry is None:
        return MISS
    valid = entry.attributes == slot.attributes and tokens.tokens_match(entry.counters, counters)
    fresh = entry.fresh_until is None or now < entry.fresh_until
    if valid and fresh:
        return HIT
    if slot.grace <= 0:
        return MISS
    since = _stale_since(entry, now)
    if since is not None and now >= since + slot.grace:
        return MISS
    return STALE


def _stale_since(entry: Entry, now: float) -> float | None:
    """When the entry went stale, if known: its expiry, or its first failed regeneration."""
    moments = [entry.stale_since]
    if entry.fresh_until is not None and now >= entry.fresh_until:
        moments.append(entry.fresh_until)
    known = [moment for moment in moments if moment is not None]
    return min(known) if known else None


def _lock(slot: Slot) -> bool:
    """Try to become the one request that re-renders a stale entry.

    The lock's timeout is relative and bounded by grace, so a request that
    dies while rendering only holds the others back until then.
    """
    try:
        slot.locked = bool(slot.cache.add(slot.lock_key, 1, timeout=max(1, int(slot.grace))))
    except Exception as error:
        outages.report(_entry_cache(slot), "rendering without the regeneration lock", error)
        slot.locked = False
        return True  # nobody can coordinate; render rather than serve stale forever
    return slot.locked


def _remember(key: str, names: Mapping[str, object]) -> None:
    if len(_known) >= _KNOWN_LIMIT:
        _known.clear()
    _known[key] = frozenset(names)


def _safely(slot: Slot, method: Any, *args: Any) -> None:
    try:
        failed = method(*args)
    except Exception as error:
        refused = _too_large(error, args)
        if refused is None:
            outages.report(_entry_cache(slot), "entry not stored", error)
        else:
            outages.too_large(_entry_cache(slot), *refused, error)
        return
    if isinstance(failed, list) and failed:  # set_many() lists the keys it did not store
        keys = ", ".join(map(str, failed))
        outages.report(_entry_cache(slot), "entry not stored", NotStored(keys))


def _too_large(error: Exception, args: tuple[Any, ...]) -> tuple[str, int] | None:
    """The key and size of the largest entry written, if the server refused it for its size.

    memcached answers ``SERVER_ERROR object too large for cache`` (1 MB items by
    default) and pymemcache raises it; the other entries of a ``set_many`` are
    stored. Redis refuses values over 512 MB by closing the connection, which
    cannot be told apart from an outage, so it is reported as one.
    """
    if "too large" not in str(error).lower() or not args:
        return None
    values = args[0] if isinstance(args[0], dict) else {args[0]: args[1]}
    sizes = {
        key: len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)) for key, value in values.items()
    }
    largest = max(sizes, key=sizes.__getitem__)
    return str(largest), sizes[largest]


class NotStored(Exception):
    """The cache answered that it did not store these keys (pymemcache's quiet failures)."""


def _entry_cache(slot: Slot) -> str:
    """The entry cache of ``slot``, for messages."""
    if slot.store is not None:
        return type(slot.store).__name__
    return repr(slot.using or conf.CACHE)


def _read_caches(slot: Slot) -> str:
    """The caches a lookup reads, for messages: the entry cache, and the version cache."""
    entries = _entry_cache(slot)
    versions = repr(conf.VERSION_CACHE)
    return entries if entries == versions else f"{entries} or VERSION_CACHE {versions}"
