"""The journal and the relay in one process, on the suite's SQLite database.

What happens across processes (a kill after commit, restarts, several relays)
and on PostgreSQL is in ``tests/journal/test_processes.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from cachesweeper import checks, journal, retries, tokens
from cachesweeper.models import JournaledSweep
from cachesweeper.relay import relay
from tests.servers import cache_settings, free_port
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)


def journal_sql(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if journal.TABLE in q["sql"]]


def token(name: str) -> int | None:
    return tokens.read_counters(caches["default"], [name]).get(name)


@pytest.fixture
def dead_cache() -> Iterator[None]:
    """The version cache at a port where nothing listens: every bump fails."""
    entry = cache_settings("redis", f"127.0.0.1:{free_port()}", counting=False, timeout=0.2)
    with override_settings(CACHES={"default": entry}):
        yield


def committed_rows(using: str = "default") -> list[JournaledSweep]:
    """Register, before any sweep, a look at the journal right after the commit."""
    seen: list[JournaledSweep] = []
    transaction.on_commit(lambda: seen.extend(JournaledSweep.objects.using(using)), using=using)
    return seen


def test_a_sweep_is_journaled_with_its_commit_and_deleted_after_its_bump() -> None:
    article = Article.objects.create(title="a", body="old")
    before = token(f"testapp.article.{article.pk}")
    with transaction.atomic():
        seen = committed_rows()
        article.save()
        assert not JournaledSweep.objects.exists()  # written just before the commit
    [row] = seen
    assert f"testapp.article.{article.pk}" in json.loads(row.names)
    assert json.loads(row.urls) == [f"/article/{article.pk}/"]
    assert not JournaledSweep.objects.exists()
    assert token(f"testapp.article.{article.pk}") != before


def test_a_transaction_journals_one_insert_however_many_saves() -> None:
    articles = [Article.objects.create(title=str(i)) for i in range(3)]
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        seen = committed_rows()
        for article in articles * 2:
            article.save()
        assert journal_sql(queries) == []
    writes = [sql.split()[0] for sql in journal_sql(queries) if not sql.startswith("SELECT")]
    assert writes == ["INSERT", "DELETE"]
    [row] = seen
    assert set(json.loads(row.names)) >= {f"testapp.article.{a.pk}" for a in articles}


def test_a_failed_journal_write_rolls_the_transaction_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Data never commits without its journal row: the commit fails, as ``atomic()`` does."""
    from django.db import DatabaseError

    article = Article.objects.create(title="a", body="old")

    def broken(*args: object, **kwargs: object) -> int:
        raise DatabaseError("no room")

    monkeypatch.setattr(journal, "write", broken)
    with pytest.raises(DatabaseError, match="no room"), transaction.atomic():
        Article.objects.filter(pk=article.pk).update(body="new")
        article.save()
    assert Article.objects.get(pk=article.pk).body == "old"


def test_a_rolled_back_savepoint_journals_nothing() -> None:
    article = Article.objects.create(title="a")
    with transaction.atomic():
        try:
            with transaction.atomic():
                article.save()
                raise RuntimeError
        except RuntimeError:
            pass
        assert not JournaledSweep.objects.exists()
    assert not JournaledSweep.objects.exists()


@override_settings(CACHESWEEPER={"JOURNAL": False})
def test_journal_off_keeps_sweeps_in_memory() -> None:
    article = Article.objects.create(title="a")
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        article.save()
    assert journal_sql(queries) == []


def test_a_failed_bump_stays_in_the_journal(dead_cache: None) -> None:
    article = Article.objects.create(title="a")  # outside a transaction: journaled on failure
    assert JournaledSweep.objects.count() == 1
    with transaction.atomic():
        article.save()
    assert JournaledSweep.objects.count() == 2  # its row stays for the relay
    assert f"testapp.article.{article.pk}" in retries.queue.journaled  # not "lost at exit"


def test_the_relay_replays_what_is_left_and_claims_each_row_once() -> None:
    JournaledSweep.objects.create(names='["left.1","left.2"]', created_at=time.time() - 60)
    fresh = JournaledSweep.objects.create(names='["fresh"]', created_at=time.time())
    rows = journal.claim("default", older_than=30, limit=10, seconds=10)
    assert [row.names for row in rows] == [["left.1", "left.2"]]
    assert journal.claim("default", older_than=0, limit=10, seconds=10)[0].id == fresh.pk
    assert journal.claim("default", older_than=0, limit=10, seconds=10) == []  # all claimed
    JournaledSweep.objects.update(claimed_until=0)
    assert relay.replay("default", older_than=0) == 2
    assert not JournaledSweep.objects.exists()
    assert token("left.1") is not None and token("fresh") is not None


def test_the_relay_keeps_rows_while_the_version_cache_is_down(dead_cache: None) -> None:
    JournaledSweep.objects.create(names='["left"]', created_at=time.time() - 60)
    assert relay.replay("default", older_than=0) == 0
    [row] = JournaledSweep.objects.all()
    assert row.claimed_until > time.time()  # tried again in a moment


def test_relay_command_once() -> None:
    JournaledSweep.objects.create(names='["left"]', created_at=time.time() - 60)
    call_command("cachesweeper", "relay", "--once")
    assert not JournaledSweep.objects.exists()
    assert token("left") is not None


def test_check_w006_when_the_table_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert checks.check_journal(databases=["default"]) == []
    monkeypatch.setattr(journal, "has_table", lambda alias: False)
    [warning] = checks.check_journal(databases=["default"])
    assert warning.id == "cachesweeper.W006"
    assert "recorded as applied" in warning.msg and "--fake" in (warning.hint or "")
    assert checks.check_journal(databases=None) == []  # a database check only


def test_check_w006_before_migrate_says_migrate_creates_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``migrate`` runs the database checks before it migrates: the warning must make
    sense there too.
    """
    from django.db.migrations.recorder import MigrationRecorder

    monkeypatch.setattr(journal, "has_table", lambda alias: False)
    recorder = MigrationRecorder(connection)
    recorder.record_unapplied(*journal.MIGRATION)
    try:
        [warning] = checks.check_journal(databases=["default"])
    finally:
        recorder.record_applied(*journal.MIGRATION)
    assert "not created yet" in warning.msg and "0001_journal is not applied" in warning.msg
    assert "if this is migrate, it is creating it now" in (warning.hint or "")


@pytest.mark.parametrize("setting", [{"JOURNAL": "yes"}, {"RELAY_DELAY": -1}])
def test_e002_journal_settings(setting: dict[str, object]) -> None:
    with override_settings(CACHESWEEPER=setting):
        [error] = checks.check_settings()
    assert error.id == "cachesweeper.E002" and next(iter(setting)) in error.msg


def test_purges_left_at_exit_are_handed_to_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    from cachesweeper import relay as relay_module
    from cachesweeper.edges.queue import PurgeQueue, _Work
    from tests.reliability.edges import RaisingEdge

    left = PurgeQueue()  # no worker thread: what a down edge leaves at exit
    left._work[RaisingEdge()] = _Work(names={"a.b.1": None}, urls={(None, "/b/1/"): None})
    monkeypatch.setattr(relay_module, "purges", left)
    assert relay_module.hand_over_purges("default") is not None
    [row] = JournaledSweep.objects.all()
    assert json.loads(row.names) == ["a.b.1"] and json.loads(row.urls) == ["/b/1/"]
    assert row.bumped
    assert left.pending() == 0  # nothing left to report lost


def test_purges_a_journal_row_holds_are_not_journaled_twice_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cachesweeper import relay as relay_module
    from cachesweeper.edges.queue import PurgeQueue, _Work
    from tests.reliability.edges import RaisingEdge

    left = PurgeQueue()
    left._work[RaisingEdge()] = _Work(names={"a.b.1": None}, urls={(None, "/b/1/"): None})
    monkeypatch.setattr(relay_module, "purges", left)
    relay.finisher("default", [1], ["a.b.1"], ["/b/1/"])  # row 1 waits for these purges
    assert relay_module.hand_over_purges("default") is None
    assert not JournaledSweep.objects.exists()


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_each_database_keeps_its_own_journal() -> None:
    article = Article.objects.using("other").create(title="elsewhere")
    with transaction.atomic(using="other"):
        seen = committed_rows(using="other")
        article.save()
    assert len(seen) == 1
    assert not JournaledSweep.objects.using("default").exists()
    assert not JournaledSweep.objects.using("other").exists()


def test_relay_command_errors() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown database"):
        call_command("cachesweeper", "relay", "--once", "--database", "nowhere")
    with (
        override_settings(CACHESWEEPER={"JOURNAL": False}),
        pytest.raises(CommandError, match="journal is off"),
    ):
        call_command("cachesweeper", "relay", "--once")


def test_invalidate_command_says_a_failed_sweep_is_in_the_journal(dead_cache: None) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="in the journal"):
        call_command("cachesweeper", "invalidate", "--tag", "frontpage")
    assert JournaledSweep.objects.count() == 1


def test_a_hook_before_the_commit_belongs_to_its_transaction() -> None:
    from cachesweeper import precommit

    ran: list[str] = []
    with transaction.atomic():
        precommit.before_commit(connection, lambda: ran.append("committed"))
        assert ran == []
    assert ran == ["committed"]
    with transaction.atomic():
        precommit.before_commit(connection, lambda: ran.append("rolled back"))
        transaction.set_rollback(True)
    with transaction.atomic():
        Article.objects.create(title="a later transaction")
    assert ran == ["committed"]
