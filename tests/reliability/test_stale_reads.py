"""Stale reads under concurrent writes, on real memcached and Redis.

The workload (``workload.py``) runs in a subprocess on a SQLite file in WAL
mode, because the suite's in-memory SQLite cannot hold concurrent
transactions. A read is *stale* when it shows a version older than one that
was committed (and swept) before the read began.

The window is tested separately and deterministically: with counter
tokens, content loaded *before* a fragment reads its token could be stored
under a token bumped in between. Inside a request the library refuses to
store content when a dependency was swept after the request began; outside
a request (a task, a command), when it was swept after the query that
loaded the instance began.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.cache import caches
from django.db import close_old_connections, transaction
from django.template import engines
from django.test import Client, override_settings

from tests.reliability import views
from tests.reliability.figures import record
from tests.reliability.workload import KINDS
from tests.servers import MemcachedServer, RedisServer
from tests.testapp.models import Article, Page

ROOT = Path(__file__).resolve().parents[2]
SAFE_KINDS = KINDS  # every kind of read, in a request or not


def run_workload(kind: str, location: str, tmp_path: Path, **extra: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.reliability.settings_wal",
        "PYTHONPATH": str(ROOT),
        "CS_DB_PATH": str(tmp_path / "workload.sqlite3"),
        "CS_CACHE_KIND": kind,
        "CS_CACHE_LOCATION": location,
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.workload"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def location_of(kind: str, request: pytest.FixtureRequest) -> str:
    if kind == "memcached":
        memcached: MemcachedServer = request.getfixturevalue("memcached_server")
        if not memcached.running:
            memcached.restart()
        return memcached.location
    redis: RedisServer = request.getfixturevalue("redis_server")
    if not redis.running:
        redis.restart()
    return redis.url


# The workload's SQLite settings (WAL, BEGIN IMMEDIATE) need Django 5.1+; the same CI
# run covers it on the newer Djangos.
NEEDS_SQLITE_OPTIONS = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="SQLite transaction_mode/init_command need Django 5.1+"
)


@NEEDS_SQLITE_OPTIONS
@pytest.mark.parametrize("kind", ["memcached", "django_redis"])
def test_no_read_is_older_than_what_was_committed_before_it(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    result = run_workload(kind, location_of(kind, request), tmp_path, CS_MIN_READS="200")
    kinds = result["kinds"]

    assert result["writer_errors"] == 0, result["examples"]
    assert result["writes"] >= 100
    assert set(result["statuses"]) == {"200"}
    for name in SAFE_KINDS:
        figures = kinds[name]
        assert figures["errors"] == figures["malformed"] == 0, result["examples"]
        assert figures["reads"] >= 200, (name, figures)
        assert figures["hits"] > 0, (name, figures)  # the cache was really in use
    stale = {name: kinds[name]["stale_reads"] for name in SAFE_KINDS}
    reads = sum(kinds[name]["reads"] for name in SAFE_KINDS)
    hits = sum(kinds[name]["hits"] for name in SAFE_KINDS)
    assert reads >= 1000, reads  # thousands of reads per run on this machine
    record(
        f"stale_reads[{kind}]",
        seconds=result["seconds"],
        writes=result["writes"],
        reads=reads,
        hits=hits,
        stale_reads=sum(stale.values()),
        outside_request_reads=kinds["eager_outside_request"]["reads"],
    )
    assert stale == dict.fromkeys(SAFE_KINDS, 0), result["examples"]


@NEEDS_SQLITE_OPTIONS
def test_the_workload_catches_a_sweep_made_before_commit(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Control: sweep in ``post_save`` before the commit (pitfall 2); stale reads appear."""
    result = run_workload(
        "memcached",
        location_of("memcached", request),
        tmp_path,
        CS_MODE="presweep",
        CS_UNTIL_STALE=",".join(SAFE_KINDS),
        CS_DURATION="30",
    )
    stale = {name: result["kinds"][name]["stale_reads"] for name in SAFE_KINDS}
    record(
        "stale_reads[control: sweep before commit]",
        seconds=result["seconds"],
        reads=sum(result["kinds"][name]["reads"] for name in SAFE_KINDS),
        stale_reads=sum(stale.values()),
    )
    assert all(count > 0 for count in stale.values()), stale


# -- the window: content loaded before the fragment reads its token ----------------------


def interleave(read: Any, write: Any) -> Any:
    """Run ``read(pause)`` in one thread and ``write()`` in another, ``write`` at the pause.

    ``pause()`` is where the reader stops (after loading, before rendering);
    the writer commits then, and the reader goes on. Deterministic: events,
    not timing, order the two.
    """
    loaded, committed = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def pause() -> None:
        loaded.set()
        assert committed.wait(10)

    def reader() -> None:
        try:
            outcome["read"] = read(pause)
        except BaseException as error:  # pragma: no cover - reported below
            outcome["error"] = error
        finally:
            close_old_connections()

    def writer() -> None:
        try:
            assert loaded.wait(10)
            write()
        except BaseException as error:  # pragma: no cover - reported below
            outcome["error"] = error
        finally:
            committed.set()
            close_old_connections()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["read"]


def save_body(pk: int, body: str) -> None:
    with transaction.atomic():
        article = Article.objects.get(pk=pk)
        article.body = body
        article.save()


@pytest.mark.django_db(transaction=True)
def test_a_view_that_loads_before_its_fragment_never_stores_old_content() -> None:
    """Load, (a write commits and sweeps), render: the old content must not be kept."""
    caches["default"].clear()
    pk = Article.objects.create(title="a", body="1").pk
    with override_settings(ROOT_URLCONF="tests.reliability.views"):
        assert Client().get(f"/eager/{pk}/").content.decode() == f"{pk}=1;"  # counter exists

        def read(pause: Any) -> str:
            views.BETWEEN_LOAD_AND_RENDER[:] = [pause]
            try:
                return Client().get(f"/eager/{pk}/").content.decode()
            finally:
                views.BETWEEN_LOAD_AND_RENDER.clear()

        first = interleave(read, lambda: save_body(pk, "2"))
        # This read began before the commit: the old version is a fair answer.
        assert first == f"{pk}=1;"
        # This one began after version 2 was committed and swept.
        later = Client().get(f"/eager/{pk}/").content.decode()
    record("window[counter tokens, in a request]", served_after_commit=later, expected=f"{pk}=2;")
    assert later == f"{pk}=2;"


@pytest.mark.django_db(transaction=True)
def test_outside_a_request_content_loaded_before_the_fragment_is_not_kept() -> None:
    """The same in a task or command: the instance knows when its query began."""
    caches["default"].clear()
    pk = Article.objects.create(title="a", body="1").pk
    assert views.render_task(Article.objects.get(pk=pk)) == f"{pk}=1;"  # the counter exists

    def read(pause: Any) -> str:
        article = Article.objects.get(pk=pk)
        pause()
        return views.render_task(article)

    assert interleave(read, lambda: save_body(pk, "2")) == f"{pk}=1;"
    later = views.render_task(Article.objects.get(pk=pk))
    record(
        "window[counter tokens, outside a request]", served_after_commit=later, expected=f"{pk}=2;"
    )
    assert later == f"{pk}=2;"


@pytest.mark.django_db(transaction=True)
def test_attribute_tokens_close_the_window() -> None:
    """With ``using="updated_at"`` the loaded instance carries its own version."""
    caches["default"].clear()
    template = engines["django"].from_string(
        "{% load cachesweeper %}{% cachesweeper page 300 'window' %}"
        "{{ page.title }}{% endcachesweeper %}"
    )
    pk = Page.objects.create(title="v1").pk

    def read(pause: Any) -> str:
        page = Page.objects.get(pk=pk)
        pause()
        return template.render({"page": page})

    def write() -> None:
        with transaction.atomic():
            page = Page.objects.get(pk=pk)
            page.title = "v2"
            page.save()

    assert interleave(read, write) == "v1"
    later = template.render({"page": Page.objects.get(pk=pk)})
    record("window[attribute tokens]", served_after_commit=later, expected="v2")
    assert later == "v2"
