"""Evicted or flushed tokens and entries never bring older content back.

* memcached with 2 MB of memory (its floor with the default 1 MB item limit),
  30 KB fragments and a noise thread writing small keys: entries *and* tokens
  are evicted all the time;
* tokens in their own cache (Redis), flushed with ``cache.clear()`` every
  50 ms while entries survive in memcached.

A control run makes missing counters come back at one fixed value (what the
older libraries did): the same load then does serve old content.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings
from pymemcache.client.base import Client as MemcacheClient

from cachesweeper import tokens
from tests.reliability import tagload
from tests.reliability.figures import record
from tests.servers import MemcachedServer, RedisServer, cache_settings, need_binary

Running = Callable[[], bool]


@pytest.fixture
def tiny_memcached() -> Iterator[MemcachedServer]:
    need_binary("memcached")
    # The LRU of memcached 1.4 (no segmented LRU, a read refreshes an item at most once a
    # minute): hot keys such as tokens are evicted too, not only cold entries.
    server = MemcachedServer(memory_mb=2, extra_args=["-o", "no_modern"])
    server.start()
    yield server
    server.close()


def memcached_stats(server: MemcachedServer) -> dict[bytes, Any]:
    client = MemcacheClient((server.host, server.port))
    try:
        return dict(client.stats())
    finally:
        client.close()


def noise(running: Running) -> None:
    """Other keys of the site, as many as it takes to push tokens out.

    Sized like tokens (a ~37-character key, a 19-digit integer), so they land
    in the tokens' memcached slab class, where evictions happen per class.
    """
    cache = caches["default"]
    for batch in itertools.count():
        if not running():
            return
        values = {
            f"noise:{batch:012d}:{index:0{18 + index % 8}d}": 10**18 + index
            for index in range(300)
        }
        try:
            cache.set_many(values, 60)
        except Exception:
            pass
        time.sleep(0.002)


class TokenWatch:
    """Counts tokens that disappeared between two looks (evicted or flushed)."""

    def __init__(self, alias: str, names: list[str]) -> None:
        self.alias = alias
        self.keys = [tokens.token_key(name) for name in names]
        self.lost = 0
        self.looks = 0

    def __call__(self, running: Running) -> None:
        cache = caches[self.alias]
        present: set[str] = set()
        while running():
            try:
                found = set(cache.get_many(self.keys))
            except Exception:
                found = set()
            self.lost += len(present - found)
            self.looks += 1
            present = found
            time.sleep(0.005)


def tag_names(count: int) -> list[str]:
    return [f"load-tag-{index}" for index in range(count)]


def test_evicted_tokens_and_entries_never_resurrect_old_content(
    tiny_memcached: MemcachedServer,
) -> None:
    entry = cache_settings("memcached", tiny_memcached.location, counting=False, timeout=1)
    # 40 tags: each token is bumped every ~0.1 s, long enough for the noise to evict it.
    watch = TokenWatch("default", tag_names(40))
    with override_settings(CACHES={"default": entry}, CACHESWEEPER={}):
        before = memcached_stats(tiny_memcached)
        outcome = tagload.run(seconds=3.0, tags=40, chaos=[noise, watch], min_reads=300)
        after = memcached_stats(tiny_memcached)

    evictions = after[b"evictions"] - before[b"evictions"]
    record(
        "eviction[memcached -m 2]",
        seconds=outcome.seconds,
        writes=outcome["writes"],
        reads=outcome["reads"],
        hits=outcome["hits"],
        evictions=evictions,
        tokens_lost=watch.lost,
        stale_reads=outcome["stale_reads"],
    )
    assert outcome["errors"] == outcome["malformed"] == 0, outcome.examples
    assert outcome["reads"] >= 300 and outcome["writes"] >= 100
    assert outcome["hits"] > 0  # entries did survive long enough to be served
    assert evictions > 1000  # the cache really was too small
    assert watch.lost > 0  # tokens themselves were evicted, not only entries
    assert outcome["stale_reads"] == 0, outcome.examples


def test_redis_evicting_under_maxmemory_never_resurrects_old_content() -> None:
    need_binary("redis-server")
    server = RedisServer(maxmemory="4mb", maxmemory_policy="allkeys-lru")
    server.start()
    try:
        entry = cache_settings("django_redis", server.url, counting=False, timeout=1)
        watch = TokenWatch("default", tag_names(40))
        with override_settings(CACHES={"default": entry}, CACHESWEEPER={}):
            outcome = tagload.run(seconds=3.0, tags=40, chaos=[noise, watch], min_reads=300)
            client = caches["default"].client.get_client()  # type: ignore[attr-defined]
            info = client.info("stats")
    finally:
        server.close()

    record(
        "eviction[redis maxmemory 4mb allkeys-lru]",
        seconds=outcome.seconds,
        writes=outcome["writes"],
        reads=outcome["reads"],
        hits=outcome["hits"],
        evictions=info["evicted_keys"],
        tokens_lost=watch.lost,
        stale_reads=outcome["stale_reads"],
    )
    assert outcome["errors"] == outcome["malformed"] == 0, outcome.examples
    assert outcome["reads"] >= 300 and outcome["hits"] > 0
    assert info["evicted_keys"] > 1000 and watch.lost > 0
    assert outcome["stale_reads"] == 0, outcome.examples


def flusher(flushes: list[float]) -> Callable[[Running], None]:
    def flush(running: Running) -> None:
        cache = caches["versions"]
        while running():
            time.sleep(0.05)
            try:
                cache.clear()
                flushes.append(time.monotonic())
            except Exception:
                pass

    return flush


def version_cache_settings(
    memcached_server: MemcachedServer, redis_server: RedisServer
) -> dict[str, Any]:
    for server in (memcached_server, redis_server):
        if not server.running:
            server.restart()
    return {
        "default": cache_settings("memcached", memcached_server.location, counting=False),
        "versions": cache_settings("django_redis", redis_server.url, counting=False),
    }


def test_flushing_the_version_cache_mid_run_never_resurrects_old_content(
    memcached_server: MemcachedServer, redis_server: RedisServer
) -> None:
    caches_setting = version_cache_settings(memcached_server, redis_server)
    flushes: list[float] = []
    watch = TokenWatch("versions", tag_names(10))
    with override_settings(CACHES=caches_setting, CACHESWEEPER={"VERSION_CACHE": "versions"}):
        caches["default"].clear()
        outcome = tagload.run(
            seconds=3.0, pad_bytes=2_000, chaos=[flusher(flushes), watch], min_reads=300
        )

    record(
        "eviction[version cache flushed every 50 ms]",
        seconds=outcome.seconds,
        writes=outcome["writes"],
        reads=outcome["reads"],
        hits=outcome["hits"],
        flushes=len(flushes),
        tokens_lost=watch.lost,
        stale_reads=outcome["stale_reads"],
    )
    assert outcome["errors"] == outcome["malformed"] == 0, outcome.examples
    assert outcome["reads"] >= 300 and len(flushes) >= 20
    assert outcome["hits"] > 0
    assert outcome["stale_reads"] == 0, outcome.examples


def test_control_counters_that_come_back_at_a_fixed_value_do_resurrect_old_content(
    memcached_server: MemcachedServer,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same load, with a missing counter recreated at one fixed value (pitfall 1)."""
    fresh = tokens.new_token

    def guessable(swept: bool) -> int:
        return fresh(swept) if swept else 2**40

    monkeypatch.setattr(tokens, "new_token", guessable)
    caches_setting = version_cache_settings(memcached_server, redis_server)
    flushes: list[float] = []
    with override_settings(CACHES=caches_setting, CACHESWEEPER={"VERSION_CACHE": "versions"}):
        caches["default"].clear()
        outcome = tagload.run(seconds=2.0, pad_bytes=2_000, chaos=[flusher(flushes)])
    record(
        "eviction[control: counters recreated at a fixed value]",
        reads=outcome["reads"],
        flushes=len(flushes),
        stale_reads=outcome["stale_reads"],
    )
    assert outcome["stale_reads"] > 0
