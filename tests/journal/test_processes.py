"""The journal across processes: killed, restarted and concurrent processes lose no sweep.

Every step runs in a process of its own (``tests/journal/scenario.py``) on a
database they share, a SQLite file and a PostgreSQL database in turn, with
a real Redis as the version cache. The test reads the journal table
directly, and waits with deadlines, never with fixed sleeps.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from cachesweeper import tokens
from tests.reliability.proxy import CuttableProxy
from tests.servers import PostgresServer, RedisServer, cache_settings, free_port

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a relay may take to pick rows up: RELAY_DELAY (3 s) plus its passes, on a busy machine.
DEADLINE = 30.0

_databases = iter(range(1_000_000))


class Site:
    """Processes of one Django site sharing one database, and a look at its journal."""

    def __init__(self, env: dict[str, str], rows: Callable[[], int]) -> None:
        self.env = env
        self.rows = rows
        self.children: list[subprocess.Popen[str]] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.journal.scenario", *args]

    def run(self, *args: str, killed: bool = False) -> Any:
        """Run a scenario to its end; its JSON answer (``killed``: it must die of SIGKILL)."""
        result = subprocess.run(
            self.command(*args),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if killed:
            assert result.returncode == -signal.SIGKILL, result.stderr
            return None
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def spawn(self, *args: str, argv: list[str] | None = None) -> subprocess.Popen[str]:
        """Start a process that stays; wait for its "ready" unless it is a plain command."""
        process = subprocess.Popen(
            argv or self.command(*args),
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.children.append(process)
        if argv is None:
            assert process.stdout is not None
            for line in process.stdout:
                if line.strip() == '"ready"':
                    break
            else:
                raise AssertionError(f"{args} ended early: {process.stderr.read()}")  # type: ignore[union-attr]
        return process

    def stop(self, process: subprocess.Popen[str]) -> str:
        """SIGTERM, as a graceful restart does; return what it logged."""
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        return stderr

    def close(self) -> None:
        for process in self.children:
            if process.poll() is None:
                process.kill()
                process.communicate()


def wait_for(condition: Callable[[], bool], what: str, within: float = DEADLINE) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {within} s")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Callable[[], int]]:
    """``CS_DB`` for the scenarios, and a count of the journal's rows read directly."""
    query = "SELECT count(*) FROM cachesweeper_journal"
    if request.param == "sqlite":
        path = tmp_path / "site.sqlite3"
        with sqlite3.connect(path) as connection:  # WAL is kept on the file
            connection.execute("PRAGMA journal_mode=WAL")

        def sqlite_rows() -> int:
            with sqlite3.connect(path, timeout=30) as connection:
                return int(connection.execute(query).fetchone()[0])

        return f"sqlite:{path}", sqlite_rows
    import psycopg

    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"journal_{os.getpid()}_{next(_databases)}"
    server.create_database(name)

    def postgres_rows() -> int:
        with psycopg.connect(
            host=server.host, port=server.port, user=server.user, dbname=name
        ) as connection:
            row = connection.execute(query).fetchone()
            assert row is not None
            return int(row[0])

    return f"postgres:{server.host}:{server.port}:{server.user}:{name}", postgres_rows


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    if not redis_server.running:
        redis_server.restart()
    import redis as client

    client.Redis(host=redis_server.host, port=redis_server.port).flushdb()
    yield redis_server


def make_site(database: tuple[str, Callable[[], int]], location: str, **extra: str) -> Site:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.journal.settings",
        "CS_DB": database[0],
        "CS_CACHE_KIND": "redis",
        "CS_CACHE_LOCATION": location,
        **extra,
    }
    return Site(env, database[1])


@pytest.fixture
def site(database: tuple[str, Callable[[], int]], redis: RedisServer) -> Iterator[Site]:
    made = make_site(database, redis.url)
    yield made
    made.close()


def test_a_rolled_back_transaction_journals_nothing(site: Site) -> None:
    site.run("migrate", "1")
    assert site.run("rollback", "1") == 0
    assert site.rows() == 0
    assert site.run("read", "1") == {"1": "old"}


def test_a_transaction_journals_one_insert_however_many_saves(site: Site) -> None:
    site.run("migrate", "100")
    counts = site.run("count", "1", "100")
    assert counts["1"]["journal"] == 1  # the INSERT, just before the commit
    assert counts["100"]["journal"] == 1
    # The relay thread deletes the rows, off the request's connection.
    assert counts["1"]["journal_after_commit"] == 0
    assert counts["100"]["journal_after_commit"] == 0
    assert site.rows() == 0


def test_killed_after_commit_the_relay_of_a_live_process_sweeps(site: Site) -> None:
    [pk] = site.run("migrate", "1")
    assert site.run("read", str(pk)) == {str(pk): "old"}  # cached
    site.run("save", str(pk), "new", "--die", killed=True)  # committed, never swept
    assert site.rows() == 1
    live = site.spawn("live")
    waited = wait_for(lambda: site.rows() == 0, "the relay sweeps the dead process's row")
    assert site.run("read", str(pk)) == {str(pk): "new"}
    assert waited < DEADLINE
    site.stop(live)


def test_cut_version_cache_sweeps_land_after_a_restart(
    database: tuple[str, Callable[[], int]], redis: RedisServer
) -> None:
    proxy = CuttableProxy(redis.host, redis.port)
    site = make_site(database, proxy.url)
    try:
        pks = [str(pk) for pk in site.run("migrate", "6")]
        assert set(site.run("read", *pks).values()) == {"old"}
        proxy.cut()
        saving = site.spawn("save-all", "new", *pks, "--stay")
        assert site.rows() == 6  # every failed sweep is in the journal
        logged = site.stop(saving)
        assert "lost at exit" not in logged
        assert "6 sweeps left in the journal" in logged or "left in the journal" in logged
        assert site.rows() == 6
        proxy.restore()
        live = site.spawn("live")
        wait_for(lambda: site.rows() == 0, "the relay lands every journaled sweep")
        assert set(site.run("read", *pks).values()) == {"new"}  # 0 lost
        site.stop(live)
    finally:
        site.close()
        proxy.close()


class _Purges(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def do_PURGE(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_purges_for_a_down_edge_are_delivered_after_a_restart(
    database: tuple[str, Callable[[], int]], redis: RedisServer
) -> None:
    port = free_port()
    site = make_site(database, redis.url, CS_EDGE=f"http://127.0.0.1:{port}")
    seen: list[str] = []
    handler = type("Purges", (_Purges,), {"seen": seen})
    edge: http.server.ThreadingHTTPServer | None = None
    try:
        # Created where no edge is configured: their purges would be journaled too.
        pks = [str(pk) for pk in make_site(database, redis.url).run("migrate", "4")]
        saving = site.spawn("save-all", "new", *pks, "--stay")
        assert site.rows() == 4  # bumped, but the edge has not taken the purges
        site.stop(saving)  # tries to flush for a few seconds, then exits
        assert site.rows() == 4
        edge = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=edge.serve_forever, daemon=True).start()
        live = site.spawn("live")
        wait_for(lambda: site.rows() == 0, "the relay delivers the pending purges")
        assert {f"/article/{pk}/" for pk in pks} <= set(seen)
        site.stop(live)
    finally:
        site.close()
        if edge is not None:
            edge.shutdown()
            edge.server_close()


def test_purges_of_sweeps_outside_a_transaction_outlive_their_process(
    database: tuple[str, Callable[[], int]], redis: RedisServer
) -> None:
    port = free_port()
    site = make_site(database, redis.url, CS_EDGE=f"http://127.0.0.1:{port}")
    seen: list[str] = []
    handler = type("Purges", (_Purges,), {"seen": seen})
    edge: http.server.ThreadingHTTPServer | None = None
    try:
        pks = site.run("migrate", "3")  # creates articles in autocommit; the edge is down
        assert site.rows() == 1  # what the edge did not take, journaled at exit
        edge = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=edge.serve_forever, daemon=True).start()
        live = site.spawn("live")
        wait_for(lambda: site.rows() == 0, "the relay delivers the journaled purges")
        assert {f"/article/{pk}/" for pk in pks} <= set(seen)
        site.stop(live)
    finally:
        site.close()
        if edge is not None:
            edge.shutdown()
            edge.server_close()


def test_several_relays_share_one_journal(site: Site, redis: RedisServer) -> None:
    site.run("migrate", "0")
    assert site.run("fill", "300") == 300
    relay = [sys.executable, "-m", "django", "cachesweeper", "relay", "--delay", "0"]
    relays = [site.spawn(argv=[*relay, "--interval", "0.05"]) for _ in range(3)]
    wait_for(lambda: site.rows() == 0, "three relays empty the journal", within=60)
    for process in relays:
        assert process.poll() is None, process.communicate()[1]  # none died (no deadlock)
        process.terminate()
        process.communicate(timeout=30)
    names = [f"fill.{index}" for index in range(300)]
    with override_settings(CACHES={"default": cache_settings("redis", redis.url, counting=False)}):
        found = tokens.read_counters(caches["default"], names)
    assert len(found) == 300  # every row was swept
    assert all(tokens.swept_at(token) is not None for token in found.values())
