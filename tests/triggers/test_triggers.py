"""Database triggers on PostgreSQL: writes from anywhere sweep, and ORM saves bump once.

Each test runs ``tests/triggers/scenario.py`` in a process of its own on a fresh
PostgreSQL database, with a real Redis as the version cache; the scenario
renders fragments (an article's, and its comment list on a field dependency),
writes, waits for the journal to empty and says which fragments ran their
body again. Without ``DATABASE_TRIGGERS`` the same writes sweep nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from cachesweeper import triggers
from tests.servers import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parents[2]

_databases = iter(range(1_000_000))


@pytest.fixture
def site(postgres_server: PostgresServer, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    """The environment of a scenario: a fresh database, Redis flushed."""
    if not redis_server.running:
        redis_server.restart()
    import redis as client

    client.Redis(host=redis_server.host, port=redis_server.port).flushdb()
    name = f"triggers_{os.getpid()}_{next(_databases)}"
    postgres_server.create_database(name)
    server = postgres_server
    yield {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.journal.settings",
        "CS_DB": f"postgres:{server.host}:{server.port}:{server.user}:{name}",
        "CS_CACHE_KIND": "redis",
        "CS_CACHE_LOCATION": redis_server.url,
        "CS_TRIGGERS": "1",
    }


def run(env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "tests.triggers.scenario", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_writes_from_anywhere_re_render_exactly_the_affected_fragments(
    site: dict[str, str],
) -> None:
    found = run(site, "writes")
    assert found["update"] == ["article0"]
    assert found["bulk_update"] == ["article1"]
    assert found["raw"] == ["article2"]  # connection.cursor()
    assert found["psql"] == ["article3"]  # another program
    assert found["rollback"] == []
    # A raw write of a comment sweeps the article it touches, and the list it is in.
    assert found["touch"] == ["article1", "comments1"]
    # Moved to another article: both articles and both lists.
    assert found["moved"] == ["article2", "comments2", "article3", "comments3"]
    # A vote touches its comment, which touches its article: followed in SQL.
    assert found["touch_nested"] == ["article0", "comments0"]
    assert found["bulk_create"] == ["article2", "comments2"]
    assert found["queryset_delete"] == ["article0", "comments0"]
    assert found["pending"] == ["0"]


def test_without_triggers_those_writes_sweep_nothing(site: dict[str, str]) -> None:
    found = run({**site, "CS_TRIGGERS": "0"}, "writes")
    for write in ("update", "bulk_update", "raw", "psql", "touch", "moved", "bulk_create"):
        assert found[write] == [], write


def test_an_orm_save_costs_one_bump(site: dict[str, str]) -> None:
    assert run(site, "bumps") == {
        "in_transaction": 1,  # two saves of one article in a transaction
        "autocommit": 1,
        # One statement besides the save's own: the session's marker, set before it. The
        # relay thread takes the trigger's row afterwards, on its own connection.
        "autocommit_statements": ["SELECT", "UPDATE"],
        # The marker was cleared at the save's commit: an update() after it is due at
        # once, a relay is woken and sweeps it.
        "update_after_autocommit": 1,
        "inherited": 1,  # two tables, one transaction of Django's: one bump
        "ignored": 1,  # only ignored fields saved: the trigger cannot tell, it sweeps once
        "mixed_saved": 1,  # a save, then an update() of another row, in one transaction
        "mixed_updated": 1,
        # The relays are woken only for rows no process took in. The update() after the
        # save is taken in too: the transaction's sweep is journaled just before its commit.
        "notified": {
            "in_transaction": 0,
            "mixed": 0,
            "autocommit": 0,
            "update_after_autocommit": 1,
            "inherited": 0,
            "ignored": 0,
        },
    }


def test_a_trigger_names_what_the_orm_names(site: dict[str, str]) -> None:
    found = run(site, "names")
    assert found["encoded"] == found["python"]
    # Moved from one article to another: both articles (touched, with their tracked field
    # values, read in SQL), both lists, the comment, the models: the same names.
    assert found["trigger"] == found["orm"]
    assert "testapp.article.author=" in found["trigger"]  # an article without author
    # A column it reads renamed (mid-migration): the write goes through, the model is swept.
    assert "testapp.article.*" in found["migrating"]


def test_the_triggers_command_and_check_w007(site: dict[str, str]) -> None:
    found = run(site, "status")
    assert all(line.endswith(": current") for line in found["before"])
    assert "testapp_article: current" in found["before"]
    assert "testapp_comment: missing" in found["after"]
    assert "testapp_vote: out of date" in found["after"]
    # The journal's own triggers: one of the two dropped.
    assert (
        "cachesweeper_journal (at commit: NOTIFY, clear the marker): out of date"
        in (found["after"])
    )
    assert found["warned_before"] == []
    assert found["warned_after"] == ["cachesweeper.W007"] * 3
    assert all(line.endswith(": current") for line in found["installed"])


@pytest.mark.django_db
def test_e010_triggers_need_postgresql() -> None:
    with override_settings(CACHESWEEPER={"DATABASE_TRIGGERS": True}):
        errors = [m for m in checks.run_checks() if m.id == "cachesweeper.E010"]
    assert errors and "PostgreSQL" in errors[0].msg


def test_e010_triggers_need_the_journal() -> None:
    with override_settings(CACHESWEEPER={"DATABASE_TRIGGERS": True, "JOURNAL": False}):
        errors = [m for m in checks.run_checks() if m.id == "cachesweeper.E010"]
    assert len(errors) == 1 and "JOURNAL" in errors[0].msg


def test_e002_database_triggers_is_a_bool() -> None:
    with override_settings(CACHESWEEPER={"DATABASE_TRIGGERS": "yes"}):
        errors = [m for m in checks.run_checks() if m.id == "cachesweeper.E002"]
    assert any("DATABASE_TRIGGERS" in m.msg for m in errors)


def test_no_e010_when_off() -> None:
    assert not [m for m in checks.run_checks() if m.id == "cachesweeper.E010"]


def test_the_sql_spells_names_as_dependencies_does() -> None:
    """Without a database: the generated SQL holds the names' literal parts."""
    tables = {table.name: table for table in triggers.tables()}
    comment = tables["testapp_comment"]
    sql = comment.function_sql()
    assert "'testapp.comment.' || r.\"id\"::text" in sql
    assert "'testapp.comment.article=' || coalesce(r.\"article_id\"::text, '')" in sql
    assert "'testapp.article.' || r.\"article_id\"::text" in sql
    assert "pg_notify" not in sql  # sent at the commit, for rows nobody took in
    assert any("pg_notify('cachesweeper', '')" in part for part in triggers.NOTIFY_SQL)
    # Multi-table inheritance: the child's rows name each level sharing its key.
    bistro = tables["testapp_bistro"].function_sql()
    for label in ("testapp.bistro.", "testapp.restaurant.", "testapp.place."):
        assert f"'{label}' ||" in bistro
    assert comment.version() == triggers.tables()[list(tables).index("testapp_comment")].version()


def test_the_relay_is_woken_by_notify_not_its_polling_interval(site: dict[str, str]) -> None:
    found = run(site, "latency", "5", "notify")
    assert found["median"] < 0.5  # polling takes about 1 s; NOTIFY a few ms


@pytest.mark.django_db
def test_triggers_command_errors() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="off"):
        call_command("cachesweeper", "triggers")
    with override_settings(CACHESWEEPER={"DATABASE_TRIGGERS": True}):
        with pytest.raises(CommandError, match="PostgreSQL"):
            call_command("cachesweeper", "triggers")
        with pytest.raises(CommandError, match="unknown database"):
            call_command("cachesweeper", "triggers", "--database", "nowhere")


def test_one_relay_listens_per_database_and_another_takes_over_when_it_dies(
    site: dict[str, str],
) -> None:
    """Three processes sweep; one listens (a notification wakes one process, not all
    three), and when it is killed another takes over: raw writes still sweep in ms.
    """
    import signal
    import statistics
    import time

    import psycopg

    from cachesweeper.listening import LOCK

    host, port, user, name = site["CS_DB"].split(":", 1)[1].split(":")
    database = psycopg.connect(host=host, port=port, user=user, dbname=name, autocommit=True)
    subprocess.run(
        [sys.executable, "-m", "tests.journal.scenario", "migrate", "1"],
        env=site,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    processes = []
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.journal.scenario", "live", "--no-polling"],
            env=site,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == '"ready"'
        processes.append(process)

    def listeners(dead: int = 0) -> list[int]:
        """The pids of the processes whose relay holds the lock, once one but ``dead`` does."""
        deadline = time.monotonic() + 10
        while True:
            found = database.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted",
                [LOCK],
            ).fetchall()
            pids = [int(row[0].rsplit(" ", 1)[1]) for row in found]
            if (pids and dead not in pids) or time.monotonic() > deadline:
                return pids
            time.sleep(0.05)

    def sweep_seconds() -> float:
        """Median seconds from a raw write's commit to the journal being empty again."""
        seconds = []
        for index in range(5):
            database.execute("UPDATE testapp_article SET title = %s", [f"t{index}"])
            started = time.monotonic()
            while database.execute(f"SELECT count(*) FROM {triggers.journal.TABLE}").fetchone()[0]:
                assert time.monotonic() - started < 10, "the row was never swept"
                time.sleep(0.002)
            seconds.append(time.monotonic() - started)
        return statistics.median(seconds)

    try:
        [first] = listeners()
        assert first in {p.pid for p in processes}
        listening = database.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
            "'cachesweeper relay %%' AND query LIKE 'LISTEN%%'"
        ).fetchone()[0]
        assert listening == 1
        assert sweep_seconds() < 5  # nobody polls: only a NOTIFY wakes a relay

        os.kill(first, signal.SIGKILL)
        [second] = listeners(dead=first)
        assert second != first and second in {p.pid for p in processes}
        assert sweep_seconds() < 5
    finally:
        for process in processes:
            process.kill()
            process.communicate()
        database.close()
