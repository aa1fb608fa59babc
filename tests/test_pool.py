"""Memcached pools (``PyMemcacheCache`` with several ``LOCATION``\\ s) in one round trip.

pymemcache's ``HashClient`` asks the servers of a pool one after the other;
``reads.PymemcachePoolReader`` (through ``cachesweeper.pools``) writes every
server's request before it waits for any reply. Checked on three real
memcached servers: the answers and the keys' servers are Django's own, a
read and the token writes ask every server at once (each server behind a
proxy that holds replies back :data:`DELAY` seconds and logs when requests
arrive), a down server's keys miss while the others keep serving, and the
suite's behaviours (hits, sweeps, lists, grace) hold on the pool.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.memcached import PyMemcacheCache
from django.test import override_settings

import cachesweeper
from cachesweeper import reads, tokens, writes
from cachesweeper.dependencies import tag_name
from tests import test_cachesweeper_for as lists
from tests import test_grace as grace
from tests.helpers import Counter, make_comments, render
from tests.reliability.proxy import CuttableProxy
from tests.servers import MemcachedServer, cache_settings
from tests.testapp.models import Article, Comment

pytestmark = pytest.mark.django_db(transaction=True)

DELAY = 0.05  # seconds each proxied server holds its replies back: one round trip
AT_ONCE = 1.5  # a call that asks its servers at once waits less than this many round trips

FRAGMENT = '{% cachesweeper article 600 "pool" n %}{{ counter.next }}{% endcachesweeper %}'
LIST = (
    '{% cachesweeper_for comment in comments 600 "pool-item" %}'
    "{{ comment.text }};{% endcachesweeper_for %}"
)


def pool_entry(locations: list[str], **options: Any) -> dict[str, Any]:
    """A stock ``PyMemcacheCache`` (no counting wrapper: it would read the ordinary way)."""
    entry = cache_settings("memcached", locations[0], counting=False, options=options)
    entry["LOCATION"] = locations
    return entry


@pytest.fixture
def pool(memcached_pool: list[MemcachedServer]) -> Iterator[PyMemcacheCache]:
    with override_settings(CACHES={"default": pool_entry([s.location for s in memcached_pool])}):
        cache = caches["default"]
        assert type(cache) is PyMemcacheCache
        cache.clear()
        yield cache


@pytest.fixture
def cache_backend(pool: PyMemcacheCache) -> Iterator[str]:
    """The imported behaviour tests' backend: the pool, read by the pool reader."""
    yield "pool"
    assert type(reads.reader(pool)) is reads.PymemcachePoolReader


@pytest.fixture
def slow_pool(
    memcached_pool: list[MemcachedServer],
) -> Iterator[tuple[PyMemcacheCache, list[CuttableProxy]]]:
    """The pool with each server behind a proxy that delays its replies by :data:`DELAY`."""
    proxies = [CuttableProxy(s.host, s.port, delay=DELAY) for s in memcached_pool]
    try:
        with override_settings(CACHES={"default": pool_entry([p.location for p in proxies])}):
            cache = caches["default"]
            cache.clear()
            yield cache, proxies
    finally:
        for proxy in proxies:
            proxy.close()


class Exchange:
    """One call through the proxies: how long it took, which servers it asked and when."""

    def __init__(self, proxies: list[CuttableProxy], call: Callable[[], Any]) -> None:
        marks = [(len(proxy.requests), len(proxy.replies)) for proxy in proxies]
        start = time.monotonic()
        self.result = call()
        self.round_trips = (time.monotonic() - start) / DELAY
        self.requests = [proxy.requests[m[0] :] for proxy, m in zip(proxies, marks, strict=True)]
        self.replies = [t for p, m in zip(proxies, marks, strict=True) for t in p.replies[m[1] :]]

    @property
    def servers(self) -> int:
        """How many servers were asked."""
        return sum(1 for times in self.requests if times)

    def assert_at_once(self, servers: int) -> None:
        """``servers`` were asked, all before any reply came back, in about one round trip."""
        assert self.servers == servers
        last_asked = max(times[0] for times in self.requests if times)
        assert last_asked < min(self.replies), "a server was asked after another one replied"
        assert self.round_trips < AT_ONCE


def keys_on(cache: PyMemcacheCache, count: int) -> list[str]:
    """``count`` keys that the ring puts on ``count`` different servers."""
    ring = cache._cache  # type: ignore[attr-defined]
    found: dict[str, str] = {}
    for n in range(1000):
        found.setdefault(ring.hasher.get_node(cache.make_key(f"k{n}")), f"k{n}")
        if len(found) == count:
            break
    return list(found.values())


def on_the_pool(test: Callable[..., None]) -> Callable[..., None]:
    """A test of another module, run here too, against the pool (see ``cache_backend``)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    return pytest.mark.usefixtures("cache_backend")(run)


# -- the suite's behaviours, on the pool ---------------------------------------------------

test_list_items_are_cached = on_the_pool(lists.test_items_render_with_forloop_and_are_cached)
test_list_sweeps = on_the_pool(lists.test_sweeping_an_inner_dependency_invalidates_the_list_entry)
test_list_item_sweeps = on_the_pool(lists.test_sweeping_one_item_rerenders_only_that_item)
test_grace = on_the_pool(grace.test_one_request_rerenders_while_others_get_the_stale_copy)
test_no_grace = on_the_pool(grace.test_without_grace_a_swept_fragment_is_never_served_stale)


# -- the reader, and where keys live ------------------------------------------------------


def test_a_pool_gets_the_pool_reader(pool: PyMemcacheCache) -> None:
    assert type(reads.reader(pool)) is reads.PymemcachePoolReader


@pytest.mark.parametrize(
    "options",
    [{"ignore_exc": True}, {"use_pooling": True}, {"BACKEND": "tests.counting"}],
    ids=["ignore_exc", "use_pooling", "counting-subclass"],
)
def test_a_pool_the_reader_cannot_drive_is_read_the_ordinary_way(
    memcached_pool: list[MemcachedServer], options: dict[str, Any]
) -> None:
    locations = [s.location for s in memcached_pool]
    if "BACKEND" in options:
        entry = cache_settings("memcached", locations[0])  # the counting PyMemcacheCache
        entry["LOCATION"] = locations
    else:
        entry = pool_entry(locations, **options)
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        assert reads.reader(cache) is reads.PLAIN
        cache.clear()
        cache.set_many({"a": 1, "b": 2})
        assert reads.get_many(cache, ["a", "b", "c"]) == {"a": 1, "b": 2}
        assert writes.add_many(cache, {"a": 9, "c": 3}, None) == ["c"]


def test_keys_live_where_django_puts_them(pool: PyMemcacheCache) -> None:
    """What Django wrote the reader finds, and what the reader wrote Django finds, on the
    server the ring names: the users' other cache calls keep working."""
    ring = pool._cache  # type: ignore[attr-defined]
    pool.set_many({f"d{n}": ("django", n) for n in range(60)})
    asked = [f"d{n}" for n in range(60)] + ["missing"]
    assert reads.get_many(pool, asked) == pool.get_many(asked)
    assert len(reads.get_many(pool, asked)) == 60

    written = {f"w{n}": n for n in range(60)}
    assert writes.set_many(pool, written, None) == []
    assert pool.get_many(list(written)) == written
    for key, value in written.items():
        made = pool.make_key(key)
        assert ring.clients[ring.hasher.get_node(made)].get(made) == value
    assert len({ring.hasher.get_node(pool.make_key(key)) for key in written}) == 3

    added = writes.add_many(pool, {"w1": "not over", "new1": 1, "new2": 2}, None)
    assert sorted(added) == ["new1", "new2"]
    assert pool.get_many(["w1", "new1", "new2"]) == {"w1": 1, "new1": 1, "new2": 2}


def test_each_key_s_server_is_worked_out_once(pool: PyMemcacheCache) -> None:
    """The ring's pure-Python hashing is remembered; anew when its servers change."""
    ring = pool._cache  # type: ignore[attr-defined]
    keys = [f"k{n}" for n in range(50)]
    pool.set_many(dict.fromkeys(keys, 1))
    original = ring.hasher.get_node
    asked: list[str] = []
    ring.hasher.get_node = lambda key: asked.append(key) or original(key)
    try:
        assert len(reads.get_many(pool, keys)) == 50
        assert len(reads.get_many(pool, keys)) == 50
        assert len(asked) == 50
        gone = ring.hasher.nodes[0]
        ring.hasher.remove_node(gone)  # what HashClient does to a dead server
        ring.hasher.add_node(gone)  # and to a revived one, last
        assert len(reads.get_many(pool, keys)) == 50
        assert len(asked) == 100
    finally:
        ring.hasher.get_node = original


def test_a_timeout_is_django_s(pool: PyMemcacheCache) -> None:
    writes.set_many(pool, {key: key for key in keys_on(pool, 3)}, 1)
    assert len(pool.get_many(keys_on(pool, 3))) == 3
    time.sleep(2.1)  # memcached counts whole seconds
    assert pool.get_many(keys_on(pool, 3)) == {}


# -- every server at once ----------------------------------------------------------------


def test_the_proxies_tell_one_server_after_the_other_from_all_at_once(
    slow_pool: tuple[PyMemcacheCache, list[CuttableProxy]],
) -> None:
    """The measure itself: HashClient's own get_many waits a round trip per server."""
    cache, proxies = slow_pool
    keys = keys_on(cache, 3)
    cache.set_many(dict.fromkeys(keys, 1))
    plain = Exchange(proxies, lambda: cache.get_many(keys))
    assert plain.servers == 3
    assert plain.round_trips >= 3
    with pytest.raises(AssertionError, match="asked after another one replied"):
        plain.assert_at_once(3)


def test_a_read_over_three_servers_asks_them_at_once(
    slow_pool: tuple[PyMemcacheCache, list[CuttableProxy]],
) -> None:
    cache, proxies = slow_pool
    keys = keys_on(cache, 3)
    cache.set_many({key: key.upper() for key in keys})
    reads.get_many(cache, keys)  # connected

    read = Exchange(proxies, lambda: reads.get_many(cache, [*keys, "missing"]))

    assert read.result == {key: key.upper() for key in keys}
    read.assert_at_once(3)


def test_a_fragment_hit_over_two_servers_asks_them_at_once(
    slow_pool: tuple[PyMemcacheCache, list[CuttableProxy]],
) -> None:
    _, proxies = slow_pool
    article = Article.objects.create(title="a")
    for n in range(30):  # a fragment whose entry and token live on different servers
        counter = Counter()
        assert render(FRAGMENT, article=article, counter=counter, n=n) == "1"
        assert render(FRAGMENT, article=article, counter=counter, n=n) == "1"  # warm
        context = {"article": article, "counter": counter, "n": n}
        hit = Exchange(proxies, lambda context=context: render(FRAGMENT, **context))
        if hit.servers >= 2:
            break
    assert hit.result == "1"  # a hit
    hit.assert_at_once(hit.servers)


def test_a_list_of_100_asks_every_server_at_once(
    slow_pool: tuple[PyMemcacheCache, list[CuttableProxy]],
) -> None:
    _, proxies = slow_pool
    article = Article.objects.create(title="a")
    Comment.objects.bulk_create(Comment(article=article, text=f"c{n}") for n in range(100))
    comments = list(Comment.objects.filter(article=article).order_by("pk"))
    expected = "".join(f"{comment.text};" for comment in comments)
    assert render(LIST, comments=comments) == expected
    assert render(LIST, comments=comments) == expected

    hit = Exchange(proxies, lambda: render(LIST, comments=comments))

    assert hit.result == expected
    hit.assert_at_once(3)


def test_a_sweep_writes_its_tokens_at_once(
    slow_pool: tuple[PyMemcacheCache, list[CuttableProxy]],
) -> None:
    cache, proxies = slow_pool
    names = [f"pool-tag-{n}" for n in range(30)]
    reads.get_many(cache, keys_on(cache, 3))  # connected

    sweep = Exchange(proxies, lambda: cachesweeper.invalidate_tag(*names))

    sweep.assert_at_once(3)
    counters = tokens.read_counters(cache, [tag_name(name) for name in names])
    assert len(counters) == 30
    assert all(tokens.swept_at(token) is not None for token in counters.values())


def test_missing_counters_are_created_in_one_round_trip(
    slow_pool: tuple[PyMemcacheCache, list[CuttableProxy]],
) -> None:
    """Not one ``add`` per counter, one server after the other."""
    cache, proxies = slow_pool
    names = [f"new-{n}" for n in range(12)]
    reads.get_many(cache, keys_on(cache, 3))  # connected

    created = Exchange(proxies, lambda: tokens.create_counters(cache, names))

    created.assert_at_once(3)
    assert sorted(created.result) == sorted(names)
    assert tokens.read_counters(cache, names) == created.result
    # Created already: add stores nothing, the tokens are read back.
    assert tokens.create_counters(cache, names) == created.result


# -- a server down -----------------------------------------------------------------------


def test_a_down_server_s_keys_miss_and_the_others_keep_serving(
    pool: PyMemcacheCache, memcached_pool: list[MemcachedServer]
) -> None:
    ring = pool._cache  # type: ignore[attr-defined]
    values = {f"k{n}": n for n in range(60)}
    pool.set_many(values)
    down = memcached_pool[0]
    node = f"{down.host}:{down.port}"
    on_down = {key for key in values if ring.hasher.get_node(pool.make_key(key)) == node}
    assert 0 < len(on_down) < 60
    down.stop()
    try:
        errors = 0
        for _ in range(3):  # the first read or two fail, as HashClient's would
            try:
                found = reads.get_many(pool, list(values))
                break
            except Exception:
                errors += 1
        assert errors >= 1
        assert (down.host, down.port) in ring._failed_clients  # recorded with HashClient
        # The others' replies were read in full: their connections still answer rightly.
        assert found == {key: value for key, value in values.items() if key not in on_down}
        assert reads.get_many(pool, ["k1", "k2"]) == {
            key: values[key] for key in ("k1", "k2") if key not in on_down
        }
    finally:
        down.restart()


def test_a_sweep_with_a_server_down_names_what_did_not_land(
    pool: PyMemcacheCache, memcached_pool: list[MemcachedServer]
) -> None:
    """The names to retry are exactly the down server's; the others' tokens moved."""
    ring = pool._cache  # type: ignore[attr-defined]
    names = [f"swept-{n}" for n in range(30)]
    assert tokens.bump(pool, names) == []
    down = memcached_pool[0]
    node = f"{down.host}:{down.port}"
    on_down = {
        n for n in names if ring.hasher.get_node(pool.make_key(tokens.token_key(n))) == node
    }
    before = tokens.read_counters(pool, names)
    down.stop()
    try:
        failed: list[str] | None = None
        for _ in range(3):  # the first bump or two raise, as HashClient's would
            try:
                failed = tokens.bump(pool, names)
                break
            except Exception:
                pass
        assert failed is not None
        assert set(failed) == on_down
        after = tokens.read_counters(pool, names)
        assert set(after) == set(names) - on_down
        assert all(after[name] != before[name] for name in after)
    finally:
        down.restart()


def test_a_hung_server_times_out_and_the_others_keep_serving(
    memcached_pool: list[MemcachedServer],
) -> None:
    """A server that accepts but never answers (SIGSTOP): a socket timeout, an ``OSError``."""
    entry = pool_entry([s.location for s in memcached_pool], timeout=0.3, connect_timeout=0.3)
    hung = memcached_pool[2]
    with override_settings(CACHES={"default": entry}):
        cache = caches["default"]
        ring = cache._cache  # type: ignore[attr-defined]
        values = {f"h{n}": n for n in range(30)}
        cache.set_many(values)
        node = f"{hung.host}:{hung.port}"
        on_hung = {key for key in values if ring.hasher.get_node(cache.make_key(key)) == node}
        hung.pause()
        try:
            with pytest.raises(OSError):
                answered = reads.get_many(cache, list(values))
                # Only reached if the paused server answered: say what came back, and from where.
                print(f"answered {sorted(answered)}; expected none of {sorted(on_hung)}")
            assert (hung.host, hung.port) in ring._failed_clients
            expected = {key: value for key, value in values.items() if key not in on_hung}
            assert reads.get_many(cache, list(values)) == expected
        finally:
            hung.resume()


def test_pages_render_while_a_server_is_down(
    pool: PyMemcacheCache, memcached_pool: list[MemcachedServer]
) -> None:
    comments = make_comments(20)
    expected = "".join(f"{comment.text};" for comment in comments)
    assert render(LIST, comments=comments) == expected
    memcached_pool[1].stop()
    try:
        for _ in range(4):  # the failing read, then the ring's quiet period
            assert render(LIST, comments=comments) == expected
        article = Article.objects.create(title="a")
        counter = Counter()
        for _ in range(3):
            render(FRAGMENT, article=article, counter=counter, n=0)
        assert 1 <= counter.value <= 3  # fail open: rendered, cached where it can be
    finally:
        memcached_pool[1].restart()
