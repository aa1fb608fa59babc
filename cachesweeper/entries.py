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
import functools
import logging
import pickle
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Final, NamedTuple

from django.core.cache import BaseCache, InvalidCacheBackendError

from cachesweeper import (
    backends,
    collector,
    holes,
    outages,
    reads,
    retries,
    signals,
    stats,
    tokens,
    uncommitted,
    writes,
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


class Slot(NamedTuple):
    """What one fragment, list or page entry is: its key, dependencies and lifetime.

    Immutable: what a lookup finds is a :class:`Lookup`, and what a render
    changes (a page's ``Vary`` key, a list's lifetime) comes back in its
    :class:`Rendered`. Made with :func:`slot`.
    """

    key: str
    dependencies: Sequence[Dependency]
    timeout: float | None
    grace: float
    using: str | None  # the entry cache alias (``None``: ``CACHE``)
    store: Any  # a cache object to use instead of an alias (the WSGI page cache's)
    loaded_at: float | None  # when the instances it depends on were loaded
    kind: str  # FRAGMENT, LIST (an entry that only speeds up others: never announced) or PAGE
    untrusted: bool  # on an instance built in memory (dependencies.untrusted): not read or stored
    counter_names: tuple[str, ...]
    attributes: dict[str, Any]

    @property
    def cache(self) -> BaseCache:
        """The entry cache."""
        if self.store is not None:
            return self.store  # type: ignore[no-any-return]
        return backends.backend(self.using or conf.CACHE)

    @property
    def lock_key(self) -> str:
        return f"{self.key}:lock"


FRAGMENT = "fragment"
LIST = "list"
PAGE = "page"


def slot(
    key: str,
    dependencies: Sequence[Dependency],
    timeout: float | None,
    grace: float = 0,
    *,
    using: str | None = None,
    store: Any = None,
    loaded_at: float | None = None,
    kind: str = FRAGMENT,
    untrusted: bool = False,
) -> Slot:
    """A :class:`Slot`, its dependencies split into counter names and attribute tokens."""
    names, attributes = split(dependencies)
    return Slot(
        key, dependencies, timeout, grace, using, store, loaded_at, kind, untrusted,
        names, attributes,
    )  # fmt: skip


def split(dependencies: Sequence[Dependency]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The names of counter tokens, and the values of attribute tokens, in one pass."""
    names: list[str] = []
    attributes: dict[str, Any] = {}
    for dep in dependencies:
        if dep.attribute is None:
            names.append(dep.name)
        else:
            attributes[dep.name] = dep.value
    return tuple(names), attributes


class Lookup:
    """What reading one slot's entry and tokens found, and the locks it holds."""

    __slots__ = (
        "cache_down",
        "contended",
        "copy",
        "counters",
        "entry",
        "locked",
        "raw",
        "slot",
        "state",
    )

    def __init__(self, slot: Slot, copy: Entry | None = None) -> None:
        self.slot = slot
        #: This process's copy of the entry (see ``copies.py``), tried first; ``None``
        #: after the lookup when it turned out of date.
        self.copy = copy
        self.entry: Entry | None = None
        self.state = MISS
        self.counters: dict[str, int] = {}
        self.raw: Any = None  # what the entry key held, entry or not (a page's Vary pointer)
        self.locked = False  # holds the regeneration lock
        self.contended = False  # a cold miss another request is rendering
        self.cache_down = False  # not read, so not to be stored either

    def seen_tokens(self) -> dict[str, int | None]:
        """What this slot reports to the enclosing frame when served from its entry."""
        assert self.entry is not None
        seen: dict[str, int | None] = dict(self.entry.counters)
        for name in self.slot.attributes:
            seen.setdefault(name, self.counters.get(name))
        return seen

    def declared_tokens(self) -> dict[str, int | None]:
        """Current tokens of the declared dependencies (``None`` where unknown)."""
        return {dep.name: self.counters.get(dep.name) for dep in self.slot.dependencies}


def version_cache() -> BaseCache:
    return backends.backend(conf.VERSION_CACHE)


class _Same(Enum):
    AS_SLOT = 0


#: In :class:`Rendered`: the slot's own key or timeout.
AS_SLOT: Final = _Same.AS_SLOT


class Rendered(NamedTuple):
    """What rendering produced: the value for the caller and the payload to store."""

    value: Any
    payload: Any = None  # None: do not store (an uncacheable page)
    failed: bool = False  # a bad result (a 5xx page): a stale entry is better, if allowed
    key: str | _Same = AS_SLOT  # another key to store under (a page's ``Vary`` variant)
    timeout: float | _Same | None = AS_SLOT  # decided from the result (``0``: do not store)


#: A slot's state and its value: the stored payload, or what was rendered (wrapped in a
#: ``holes.Holed`` when it has holes left for the outermost caller to fill).
Served = tuple[str, Any]


def serve(
    slots: Sequence[Slot],
    render: Callable[[int], Rendered],
    found: Sequence[Lookup] | None = None,
) -> list[Served]:
    """The one read path: serve each slot from its entry, or render and store it.

    ``render(i)`` builds slot ``i``; ``found`` are the slots' lookups when the
    caller made them (a page following its ``Vary`` pointer, the WSGI page
    cache trying its copy). Every slot reports its dependencies to the
    enclosing frame, hit or miss. A render that raises (or fails) falls back
    to a stale entry while grace allows and never overwrites it;
    regeneration locks are always released.
    """
    found = lookup(slots) if found is None else found
    if len(found) == 1 and found[0].state == HIT:
        return [served(found[0])]  # the most common case; a hit holds no lock
    to_save: list[_ToSave] = []
    try:
        results: list[Served] = []
        for index, one in enumerate(found):
            if one.contended:
                wait_for_entry(one)
            if one.state != MISS:
                results.append(served(one))
                continue
            with _Render(one, to_save) as rendering:
                rendering.outcome = render(index)
            results.append(rendering.result)
        if to_save:
            save(to_save)
    finally:
        release(found)
    return results


async def aserve(
    slots: Sequence[Slot],
    render: Callable[[int], Awaitable[Rendered]],
    found: Sequence[Lookup] | None = None,
) -> list[Served]:
    """:func:`serve` for async views: waits and renders without blocking the event loop."""
    found = lookup(slots) if found is None else found
    to_save: list[_ToSave] = []
    try:
        results: list[Served] = []
        for index, one in enumerate(found):
            if one.contended:
                await await_entry(one)
            if one.state != MISS:
                results.append(served(one))
                continue
            with _Render(one, to_save) as rendering:
                rendering.outcome = await render(index)
            results.append(rendering.result)
        save(to_save)
    finally:
        release(found)
    return results


class _ToSave(NamedTuple):
    found: Lookup
    payload: Any
    frame: collector.Frame
    key: str
    timeout: float | None


class _Render:
    """One render of a missed slot, in its own frame, judged when it ends.

    ``serve`` and ``aserve`` differ only in how they call ``render``; what
    happens around the call is here, once.
    """

    __slots__ = ("_collecting", "found", "frame", "outcome", "result", "to_save")

    def __init__(self, found: Lookup, to_save: list[_ToSave]) -> None:
        self.found, self.to_save = found, to_save
        self.outcome: Rendered | None = None
        self.result: Served = (MISS, None)

    def __enter__(self) -> _Render:
        announce(self.found.slot, MISS)
        self._collecting = collector.collect(keeps_holes=True)
        self.frame = self._collecting.__enter__()
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> bool:
        self._collecting.__exit__(kind, error, traceback)
        found = self.found
        if found.slot.untrusted:
            # Built from an instance that may not match its row (or has none); what
            # encloses it (a fragment, a list entry, a page) shows it too.
            collector.spoil()
            if self.outcome is not None:
                self.result = (MISS, self.outcome.value)
            return False
        if error is not None:
            if not isinstance(error, Exception) or not can_serve_stale(found):
                return False  # raised as it is
            logger.error("cachesweeper: re-render failed, serving the stale entry", exc_info=error)
            self.result = _stale(found)
            return True
        assert self.outcome is not None
        self.result = accept(found, self.outcome, self.frame, self.to_save)
        return False


def served(found: Lookup) -> Served:
    """Serve a slot from its entry (a hit, or stale during grace)."""
    assert found.entry is not None
    announce(found.slot, found.state, found.entry)
    if collector.current() is not None:
        collector.report(found.seen_tokens())
        holes.report(found.entry.payload)
    return found.state, found.entry.payload


def _stale(found: Lookup) -> Served:
    keep_stale(found)
    found.state = STALE
    return served(found)


def accept(
    found: Lookup, outcome: Rendered, frame: collector.Frame, to_save: list[_ToSave]
) -> Served:
    """Take a fresh render: queue its payload for storing, or prefer the stale entry."""
    if outcome.failed and can_serve_stale(found):
        logger.warning("cachesweeper: re-render gave a bad result, serving the stale entry")
        return _stale(found)
    collector.report(found.declared_tokens())
    if outcome.payload is not None:
        slot = found.slot
        key = slot.key if outcome.key is AS_SLOT else outcome.key
        timeout = slot.timeout if outcome.timeout is AS_SLOT else outcome.timeout
        payload = holes.with_holes(outcome.payload, frame.holes)
        to_save.append(_ToSave(found, payload, frame, key, timeout))
    return MISS, holes.with_holes(outcome.value, frame.holes)


def wait_for_entry(found: Lookup) -> bool:
    """A cold miss that another request is already rendering: wait briefly for its entry."""
    deadline = time.monotonic() + conf.COLD_WAIT
    while time.monotonic() < deadline:
        time.sleep(_POLL)
        if _waited(found):
            return found.state == HIT
    return False


async def await_entry(found: Lookup) -> bool:
    """:func:`wait_for_entry` for async views, without blocking the event loop."""
    deadline = time.monotonic() + conf.COLD_WAIT
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL)
        if _waited(found):
            return found.state == HIT
    return False


def _waited(found: Lookup) -> bool:
    """Read again while waiting; whether waiting is over (the entry came, or the cache went)."""
    read([found], lock=False)
    return found.state == HIT or found.cache_down


def lookup(slots: Sequence[Slot]) -> list[Lookup]:
    """Read the entries of ``slots`` and the tokens they need; see :func:`read`."""
    found = [Lookup(slot) for slot in slots]
    if any(slot.untrusted for slot in slots):
        # Fragments on instances built in memory are never read: they stay misses.
        trusted = [one for one in found if not one.slot.untrusted]
        if trusted:
            read(trusted)
    else:
        read(found)
    return found


def read(found: Sequence[Lookup], lock: bool = True) -> None:
    """Fetch the entries and the tokens ``found`` need, and decide each state.

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

    Lookups that carry this process's copy of their entry (the WSGI page
    cache's, see ``copies.py``) try it first, reading only its tokens.
    """
    untrusted = _untrusted()
    try:
        if found[0].copy is not None and _copies_hit(found, untrusted):
            return
        needed = _needed(found)
        raw, counters = _fetch(found[0].slot, [one.slot.key for one in found], needed)
        _complete(found, raw, counters, needed)
    except InvalidCacheBackendError:
        raise  # a ``using=`` naming no cache is a mistake to fix, not an outage
    except Exception as error:
        outages.report(_read_caches(found[0].slot), "rendering uncached", error)
        for one in found:
            one.cache_down = True
            one.state = MISS
        return

    if untrusted:
        _distrust(found, untrusted)
    now = time.time()
    won: list[Lookup] = []
    for one in found:
        if one.cache_down:
            continue
        one.raw = raw.get(one.slot.key)
        one.counters = counters
        one.state = _evaluate(one, counters, now)
        if not lock or one.slot.grace <= 0 or one.state == HIT:
            continue
        if one.state == STALE and _lock(one):
            won.append(one)
        elif one.entry is None and conf.COLD_WAIT > 0:
            # A cold miss: whoever gets the lock renders, the others may wait for it.
            one.contended = not _lock(one)
            if one.locked:
                won.append(one)
    if won:
        _recheck(won)


def _needed(found: Sequence[Lookup]) -> dict[str, None]:
    """The counter names to read with the entries, in order."""
    wants = collector.wants_tokens()
    needed: dict[str, None] = {}
    for one in found:
        slot = one.slot
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


def _copies_hit(found: Sequence[Lookup], untrusted: frozenset[str]) -> bool:
    """Serve every slot from its copy when the copies' tokens are still current.

    Reads only those tokens. If any copy is out of date (a token moved or is
    missing, the copy expired) or a sweep is pending, the copies are
    forgotten and the ordinary read decides, one more round trip.
    """
    if untrusted or any(one.copy is None for one in found):
        return _forget_copies(found)
    names = {name: None for one in found for name in one.copy.counters}  # type: ignore[union-attr]
    counters = tokens.read_counters(version_cache(), names)
    now = time.time()
    for one in found:
        one.entry = one.copy
        if _evaluate(one, counters, now) != HIT:
            return _forget_copies(found)
    for one in found:
        one.counters, one.state = counters, HIT
    return True


def _forget_copies(found: Sequence[Lookup]) -> bool:
    for one in found:
        one.copy = one.entry = None
    return False


def _complete(
    found: Sequence[Lookup],
    raw: Mapping[str, Any],
    counters: dict[str, int],
    needed: dict[str, None],
) -> None:
    """Load the entries; read the counters only they name; create missing declared ones."""
    more: dict[str, None] = {}
    for one in found:
        key = one.slot.key
        one.entry = entry = Entry.load(raw.get(key))
        if entry is not None:
            unknown = [name for name in entry.counters if name not in needed]
            if unknown:
                more.update(dict.fromkeys(unknown))
            if unknown or key not in _known:
                _remember(key, entry.counters)
    if more:
        counters.update(tokens.read_counters(version_cache(), more))
    if len(counters) < len(needed):
        declared = {dep.name for one in found for dep in one.slot.dependencies}
        missing = [name for name in needed if name not in counters and name in declared]
        if missing:
            counters.update(tokens.create_counters(version_cache(), missing))
            if any(name not in counters for name in missing):
                # Some clients answer "not stored" instead of raising while
                # they consider the server dead.
                raise ConnectionError("the version cache did not keep new counters")


def _distrust(found: Sequence[Lookup], untrusted: frozenset[str]) -> None:
    """Slots depending on a sweep that has not landed yet are rendered, not served or stored.

    If that sweep is being retried, the cache answers again: retry it at once.
    """
    for one in found:
        names = {dep.name for dep in one.slot.dependencies}
        if one.entry is not None:
            names.update(one.entry.counters)
        if not untrusted.isdisjoint(names):
            one.cache_down = True
            one.state = MISS
    if retries.queue.unconfirmed:
        retries.queue.poke()


def _recheck(won: list[Lookup]) -> None:
    """Read again after winning a lock: the previous holder may have just stored it.

    Without this, a request that read the stale entry just before another
    request stored the new one, and locked just after that one released,
    would render the page a second time.
    """
    read(won, lock=False)
    for one in won:
        if one.state == HIT or one.cache_down:
            release([one])
        else:
            one.state = MISS  # this request renders; a stale entry is its fallback


def save(to_save: Sequence[_ToSave]) -> None:
    """Store freshly rendered payloads, each against the tokens it was built from.

    Content whose tokens are incomplete (the cache was down for an inner
    fragment) or inconsistent (a sweep happened mid-render) is not stored,
    nor is content that may show older data under a newer token (see
    :func:`_predates_a_sweep`); what encloses such content is not stored either.
    Their locks are released once they are stored.
    """
    if not to_save:
        return
    now = time.time()
    request_started = collector.request_started_at()
    expiry: float | None
    batch: dict[float | None, dict[str, Any]] = {}
    for found, payload, frame, key, timeout in to_save:
        if found.cache_down or not frame.complete:
            continue
        slot = found.slot
        declared = {name: found.counters[name] for name in slot.counter_names}
        counters = {**declared}
        counters.update((name, token) for name, token in frame.tokens.items() if token is not None)
        if _predates_a_sweep(slot.loaded_at, declared, request_started, counters):
            collector.spoil()  # the enclosing fragment or page shows this content too
            continue
        if timeout is None:
            fresh_until, expiry = None, None
        elif timeout <= 0:
            continue
        else:
            fresh_until, expiry = now + timeout, timeout + slot.grace
        entry = Entry(payload, counters, slot.attributes, fresh_until)
        batch.setdefault(expiry, {})[key] = entry.dump()
        _remember(key, counters)
    first = to_save[0].found.slot
    cache = first.cache
    for expiry, values in batch.items():
        _safely(first, functools.partial(writes.set_many, cache), values, expiry)
    release([item.found for item in to_save])


def release(found: Sequence[Lookup]) -> None:
    """Give up the regeneration locks held (always, even after an error)."""
    held = [one for one in found if one.locked]
    if held:
        first = held[0].slot
        _safely(first, first.cache.delete_many, [one.slot.lock_key for one in held])
        for one in held:
            one.locked = False


def keep_stale(found: Lookup) -> None:
    """A regeneration failed: keep serving the stale entry, for ``grace`` seconds at most."""
    entry, slot = found.entry, found.slot
    assert entry is not None
    if entry.stale_since is None:
        marked = entry._replace(stale_since=time.time())
        _safely(slot, slot.cache.set, slot.key, marked.dump(), max(1, int(slot.grace)))
    release([found])


def can_serve_stale(found: Lookup) -> bool:
    """Whether a failed regeneration may fall back to the slot's stale entry."""
    if found.entry is None or found.slot.grace <= 0:
        return False
    since = _stale_since(found.entry, time.time())
    return since is None or time.time() < since + found.slot.grace


_SIGNALS = {
    FRAGMENT: {
        HIT: signals.fragment_hit,
        STALE: signals.fragment_stale,
        MISS: signals.fragment_miss,
    },
    PAGE: {HIT: signals.page_hit, STALE: signals.page_stale, MISS: signals.page_miss},
}


def announce(slot: Slot, state: str, entry: Entry | None = None) -> None:
    """Count the serve and send the matching signal, only when somebody listens.

    List entries only speed up their items, which are announced themselves.
    """
    if slot.kind == LIST:
        return
    stats.SERVED[state] += 1
    signal = _SIGNALS[slot.kind][state]
    if signal.receivers:
        names = list(entry.counters) if entry is not None else []
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


def _evaluate(found: Lookup, counters: Mapping[str, int], now: float) -> str:
    entry, slot = found.entry, found.slot
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


def _lock(found: Lookup) -> bool:
    """Try to become the one request that re-renders a stale entry.

    The lock's timeout is relative and bounded by grace, so a request that
    dies while rendering only holds the others back until then.
    """
    slot = found.slot
    try:
        found.locked = bool(slot.cache.add(slot.lock_key, 1, timeout=max(1, int(slot.grace))))
    except Exception as error:
        outages.report(_entry_cache(slot), "rendering without the regeneration lock", error)
        found.locked = False
        return True  # nobody can coordinate; render rather than serve stale forever
    return found.locked


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
