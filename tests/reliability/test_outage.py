"""The cache goes away during a sustained run of requests, and comes back.

* **Killed and restarted** (memcached, django-redis, Django's RedisCache):
  no 5xx and no exception while it is down (pages render uncached, with a
  warning), no stale page after it returns (its tokens died with it), and
  the sweeps that failed meanwhile are retried until they land.
* **Cut off or hung, then back with its contents** (a proxy that drops the
  connections, or SIGSTOP / SIGCONT): the sweeps that failed meanwhile are
  retried and land; until they do, entries stored before the outage are
  still there under the old tokens (a hung server still executes what was
  sent to it when it resumes; a cut network loses it).
* **pymemcache's quiet failures**: after one error, Django's memcached client
  answers defaults without raising (``get`` gives ``None``, ``set_many``
  reports every key failed) for ``retry_timeout``; a sweep made then must be
  retried like any failed sweep, and reads must still fail open.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.db import transaction
from django.test import Client, override_settings

from cachesweeper import retries
from cachesweeper.retries import RetryQueue
from tests.reliability.figures import record
from tests.reliability.proxy import CuttableProxy
from tests.servers import MemcachedServer, RedisServer, ServerProcess, cache_settings, need_binary
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

#: Socket timeout of the clients, seconds: a hung server costs this much per call.
TIMEOUT = 0.25


@pytest.fixture(autouse=True)
def _own_retries(retries: RetryQueue) -> None:
    """Each test has a retry queue of its own (``cachesweeper.retries.queue``, see conftest)."""


@pytest.fixture(autouse=True)
def _reliability_urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF="tests.reliability.views"):
        yield


class LogCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1


@pytest.fixture
def log_count() -> Iterator[LogCount]:
    handler = LogCount()
    logger = logging.getLogger("cachesweeper")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def start_server(kind: str) -> tuple[MemcachedServer | RedisServer, dict[str, Any]]:
    """A private server (this test kills it) and the ``CACHES`` entry for it."""
    if kind == "memcached":
        need_binary("memcached")
        memcached = MemcachedServer()
        memcached.start()
        # pymemcache drops a server for ``dead_timeout`` (60 s by default) after
        # ``retry_attempts`` failures; 1 s keeps the run short. Reads fail open meanwhile.
        options = {"dead_timeout": 1, "retry_timeout": TIMEOUT}
        entry = cache_settings(
            kind, memcached.location, counting=False, timeout=TIMEOUT, options=options
        )
        return memcached, entry
    need_binary("redis-server")
    redis = RedisServer()
    redis.start()
    return redis, cache_settings(kind, redis.url, counting=False, timeout=TIMEOUT)


def save_body(pk: int, body: str) -> None:
    with transaction.atomic():
        article = Article.objects.get(pk=pk)
        article.body = body
        article.save()


def answering(alias: str = "default", within: float = 10.0) -> float:
    """Wait until the cache really answers (not a quiet default); return the seconds waited."""
    cache = caches[alias]
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            cache.set("reliability:probe", 1, 30)
            if cache.get("reliability:probe") == 1:
                return time.monotonic() - started
        except Exception:
            pass
        time.sleep(0.02)
    raise AssertionError(f"the cache did not answer within {within} s")


# -- killed and restarted during a sustained run ------------------------------------------


@pytest.mark.parametrize("kind", ["memcached", "django_redis", "redis"])
def test_killed_and_restarted_mid_run(kind: str, log_count: LogCount) -> None:
    server, entry = start_server(kind)
    events: dict[str, float] = {}
    try:
        with override_settings(CACHES={"default": entry}):
            caches["default"].clear()
            figures = sustained_run(server, events)
    finally:
        server.close()

    pending = figures.pop("pending_after")
    record(
        f"outage[{kind} killed 1.5 s]",
        **figures,
        errors_logged=log_count.levels["ERROR"],
        warnings_logged=log_count.levels["WARNING"],
    )
    assert figures["exceptions"] == 0
    assert figures["non_200"] == 0
    assert figures["reads_while_down"] >= 20  # it really was down while we kept asking
    assert log_count.levels["WARNING"] > 0  # ... and said so
    assert figures["sweeps_while_down"] > 0
    assert figures["hits_after"] > 0  # the cache is used again once it is back
    assert pending == []  # every sweep that failed was retried
    assert figures["stale_reads"] == 0


def sustained_run(server: ServerProcess, events: dict[str, float]) -> dict[str, Any]:
    """Requests and saves for 4 s; the server dies at 1 s and is back at 2.5 s."""
    retries.queue.first_delay, retries.queue.max_delay = 0.2, 1.0
    pks = [Article.objects.create(title=f"a{index}", body="0").pk for index in range(3)]
    committed = dict.fromkeys(pks, 0)
    client = Client()
    counts: Counter[str] = Counter()
    begin = time.monotonic()

    def chaos() -> None:
        time.sleep(1.0)
        server.kill()
        events["down"] = time.monotonic()
        time.sleep(1.5)
        server.restart()
        events["up"] = time.monotonic()

    thread = threading.Thread(target=chaos)
    thread.start()
    urls: list[Callable[[int], str]] = [
        lambda pk: f"/article/{pk}/",
        lambda pk: "/articles/",
        lambda pk: f"/fragment/{pk}/",
    ]
    iteration = 0
    first_hit_after: float | None = None
    while time.monotonic() - begin < 4.0:
        iteration += 1
        pk = pks[iteration % len(pks)]
        if iteration % 8 == 0:
            version = committed[pk] + 1
            save_body(pk, str(version))
            committed[pk] = version
            if "down" in events and "up" not in events:
                counts["sweeps_while_down"] += 1
            continue
        floor = dict(committed)
        started = time.monotonic()
        phase = "before" if "down" not in events else "down" if "up" not in events else "after"
        try:
            response = client.get(urls[iteration % len(urls)](pk))
        except Exception:
            counts["exceptions"] += 1
            continue
        counts[f"reads_{phase}"] += 1
        if response.status_code != 200:
            counts["non_200"] += 1
            continue
        if phase == "after" and response.has_header("Age"):  # a page served from the cache
            counts["hits_after"] += 1
            if first_hit_after is None:
                first_hit_after = started - events["up"]
        seen = {
            int(pair.split("=")[0]): int(pair.split("=")[1])
            for pair in response.content.decode().strip(";").split(";")
        }
        if any(version < floor[item] for item, version in seen.items()):
            counts["stale_reads"] += 1
    thread.join()
    deadline = time.monotonic() + 5
    while retries.queue.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {
        "requests": sum(counts[f"reads_{phase}"] for phase in ("before", "down", "after")),
        "reads_while_down": counts["reads_down"],
        "reads_after": counts["reads_after"],
        "sweeps_while_down": counts["sweeps_while_down"],
        "hits_after": counts["hits_after"],
        "first_hit_after_restart_s": round(first_hit_after or -1.0, 2),
        "exceptions": counts["exceptions"],
        "non_200": counts["non_200"],
        "stale_reads": counts["stale_reads"],
        "pending_after": retries.queue.pending(),
    }


# -- cut off, then back with its contents -----------------------------------------------


def warm(client: Client, pk: int) -> None:
    assert client.get(f"/article/{pk}/").content.decode() == f"{pk}=1;"
    assert client.get(f"/article/{pk}/").has_header("Age")  # stored and served


@contextlib.contextmanager
def behind_proxy(kind: str) -> Iterator[tuple[MemcachedServer | RedisServer, CuttableProxy]]:
    """A private server, reached through a proxy that can cut the network."""
    server, _ = start_server(kind)
    proxy = CuttableProxy(server.host, server.port)
    location = proxy.location if kind == "memcached" else proxy.url
    options = {"dead_timeout": 1, "retry_timeout": TIMEOUT} if kind == "memcached" else None
    entry = cache_settings(kind, location, counting=False, timeout=TIMEOUT, options=options)
    try:
        with override_settings(CACHES={"default": entry}):
            caches["default"].clear()
            yield server, proxy
    finally:
        proxy.close()
        server.close()


@pytest.mark.parametrize("how", ["network cut", "server hung"])
@pytest.mark.parametrize("kind", ["memcached", "django_redis"])
def test_a_sweep_that_failed_lands_once_the_cache_is_back(
    kind: str, how: str, log_count: LogCount
) -> None:
    """The cache comes back *with its contents*; the failed sweep is retried and lands."""
    retries.queue.first_delay, retries.queue.max_delay = 0.5, 30.0  # the defaults
    with behind_proxy(kind) as (server, proxy):
        client = Client()
        pk = Article.objects.create(title="a", body="1").pk
        warm(client, pk)
        proxy.cut() if how == "network cut" else server.pause()
        save_body(pk, "2")  # the sweep fails: logged, queued for retry
        assert f"testapp.article.{pk}" in retries.queue.pending()
        time.sleep(1.0)  # the outage goes on past the first retry
        proxy.restore() if how == "network cut" else server.resume()
        back = time.monotonic()
        answering()
        stale = 0
        while client.get(f"/article/{pk}/").content.decode() != f"{pk}=2;":
            stale += 1
            assert time.monotonic() - back < 35, "the failed sweep never landed"
            time.sleep(0.02)
        window = time.monotonic() - back
        while retries.queue.pending():
            assert time.monotonic() - back < 35, "the retry queue never drained"
            time.sleep(0.02)
        drained = time.monotonic() - back
    record(
        f"outage[{kind} {how} 1.3 s, contents kept]",
        stale_reads_after_return=stale,
        stale_window_s=round(window, 2),
        retry_landed_after_s=round(drained, 2),
        errors_logged=log_count.levels["ERROR"],
    )
    assert log_count.levels["ERROR"] > 0


@pytest.mark.parametrize("kind", ["memcached", "django_redis"])
def test_no_stale_read_once_a_cut_off_cache_answers_again(kind: str) -> None:
    retries.queue.first_delay = 60  # the retry has not come round yet (it can take 30 s)
    with behind_proxy(kind) as (_, proxy):
        client = Client()
        pk = Article.objects.create(title="a", body="1").pk
        warm(client, pk)
        proxy.cut()
        save_body(pk, "2")
        proxy.restore()
        answering()
        served = client.get(f"/article/{pk}/").content.decode()
    record(f"outage[{kind} network cut, first read once back]", served=served, expected=f"{pk}=2;")
    assert served == f"{pk}=2;"


# -- pymemcache's quiet failures --------------------------------------------------------


def test_quiet_memcached_failures_count_as_failures(log_count: LogCount) -> None:
    need_binary("memcached")
    server = MemcachedServer()
    server.start()
    # pymemcache's defaults: 2 attempts, quiet for 1 s after a failure, then dead.
    entry = cache_settings("memcached", server.location, counting=False, timeout=TIMEOUT)
    retries.queue.first_delay = 60
    try:
        with override_settings(CACHES={"default": entry}):
            cache = caches["default"]
            cache.clear()
            client = Client()
            pk = Article.objects.create(title="a", body="1").pk
            warm(client, pk)
            server.pause()
            with pytest.raises(OSError):
                cache.get("reliability:probe")  # the failure that starts the quiet period
            quiet_started = time.monotonic()
            assert cache.get("reliability:probe") is None  # quiet: a default, no error
            save_body(pk, "2")  # its sweep meets the quiet client
            quiet_sweep = time.monotonic() - quiet_started < 1.0
            assert f"testapp.article.{pk}" in retries.queue.pending()
            response = client.get(f"/article/{pk}/")  # a read meets it too: fails open
            assert response.status_code == 200 and response.content.decode() == f"{pk}=2;"
            server.resume()
            time.sleep(1.1)  # past pymemcache's quiet period
            answering()
            assert retries.queue.flush() == []
            after = client.get(f"/article/{pk}/").content.decode()
    finally:
        server.close()
    record(
        "outage[pymemcache quiet failures]",
        sweep_in_quiet_period=quiet_sweep,
        sweep_retried=True,
        read_failed_open=True,
        served_after_retry=after,
    )
    assert quiet_sweep
    assert after == f"{pk}=2;"
