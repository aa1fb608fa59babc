"""Database triggers, run in a process of its own on PostgreSQL (``tests/journal/settings.py``).

    python -m tests.triggers.scenario writes     # every kind of write, what re-rendered
    python -m tests.triggers.scenario names      # a trigger's names next to the ORM's
    python -m tests.triggers.scenario bumps      # bumps an ORM save costs
    python -m tests.triggers.scenario status     # the triggers command and check W007
    python -m tests.triggers.scenario latency 50 [notify|poll|dead]
                                                 # commit -> bump through the relay, seconds
    python -m tests.triggers.scenario cost 50 1 100  # update() of N rows: statements, time

Prints one JSON line. ``CS_TRIGGERS=1`` turns the triggers on; without it
the same steps run, and the tests see that nothing outside the ORM swept.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.journal.settings")
django.setup()

from django.core.cache import caches  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.template import engines  # noqa: E402

from cachesweeper import journal, retries, tokens  # noqa: E402
from cachesweeper.conf import conf  # noqa: E402
from cachesweeper.dependencies import encode  # noqa: E402
from cachesweeper.listening import Listener  # noqa: E402
from cachesweeper.relay import relay  # noqa: E402
from tests.testapp.models import Article, Comment, Restaurant, Vote  # noqa: E402

#: Seconds a relayed sweep may take on a busy machine (with NOTIFY it takes milliseconds).
DEADLINE = 20.0

ARTICLE = (
    '{% load cachesweeper %}{% cachesweeper article 600 "t" %}{{ probe }}{% endcachesweeper %}'
)
COMMENTS = (
    '{% load cachesweeper %}{% cachesweeper comments 600 "c" %}{{ probe }}{% endcachesweeper %}'
)


class Probe:
    """Counts the renders of the fragment body it is shown in."""

    def __init__(self) -> None:
        self.count = 0

    def __str__(self) -> str:
        self.count += 1
        return ""


def say(value: Any) -> None:
    print(json.dumps(value), flush=True)


def setup() -> tuple[list[Article], dict[int, Comment]]:
    call_command("migrate", run_syncdb=True, verbosity=0)
    articles = [Article.objects.create(title=f"a{i}", body="old") for i in range(4)]
    comments = {a.pk: Comment.objects.create(article=a, text="c") for a in articles}
    relay.start()
    wait_done()
    return articles, comments


def wait_done() -> None:
    """Until the journal is empty: every committed sweep, the triggers' too, is bumped."""
    deadline = time.monotonic() + DEADLINE
    while journal.pending() and time.monotonic() < deadline:
        time.sleep(0.005)


def rendered(articles: list[Article]) -> list[str]:
    """Render every article's fragment and its comment list; the ones that ran their body."""
    engine = engines["django"]
    found = []
    for index, loaded in enumerate(articles):
        article = Article.objects.get(pk=loaded.pk)  # as a view loads it
        for label, source, obj in (
            ("article", ARTICLE, {"article": article}),
            ("comments", COMMENTS, {"comments": Comment.objects.filter(article=article)}),
        ):
            probe = Probe()
            engine.from_string(source).render({**obj, "probe": probe})
            if probe.count:
                found.append(f"{label}{index}")
    return found


def after(write: Callable[[], None], articles: list[Article]) -> list[str]:
    """What re-renders after ``write`` (the relay given its time)."""
    rendered(articles)  # all cached
    write()
    time.sleep(0.05)  # a NOTIFY-less run polls: the commit is visible to it now
    wait_done()
    return rendered(articles)


def psql(sql: str) -> None:
    settings = connection.settings_dict
    subprocess.run(
        ["psql", "-h", settings["HOST"], "-p", str(settings["PORT"]), "-U", settings["USER"],
         "-d", settings["NAME"], "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True,
    )  # fmt: skip


def rollback(pk: int) -> None:
    try:
        with transaction.atomic():
            Article.objects.filter(pk=pk).update(title="rolled back")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass


def writes() -> dict[str, list[str]]:
    articles, comments = setup()
    ids = [a.pk for a in articles]
    bulk = Article.objects.get(pk=ids[1])
    bulk.title = "bulk"
    vote = Vote.objects.create(comment=comments[ids[0]])
    wait_done()

    def raw(sql: str, *params: Any) -> Callable[[], None]:
        def run() -> None:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)

        return run

    comment_sql = "UPDATE testapp_comment SET {} WHERE id = %s"
    steps: dict[str, Callable[[], None]] = {
        "update": lambda: Article.objects.filter(pk=ids[0]).update(title="u"),
        "bulk_update": lambda: Article.objects.bulk_update([bulk], ["title"]),
        "raw": raw("UPDATE testapp_article SET title = 'r' WHERE id = %s", ids[2]),
        "psql": lambda: psql(f"UPDATE testapp_article SET title = 'p' WHERE id = {ids[3]}"),
        "rollback": lambda: rollback(ids[0]),
        "touch": raw(comment_sql.format("text = 't'"), comments[ids[1]].pk),
        "moved": raw(comment_sql.format(f"article_id = {ids[3]}"), comments[ids[2]].pk),
        "touch_nested": raw("UPDATE testapp_vote SET value = 5 WHERE id = %s", vote.pk),
        "bulk_create": lambda: Comment.objects.bulk_create([Comment(article_id=ids[2])]),
        "queryset_delete": lambda: Comment.objects.filter(article_id=ids[0]).delete(),
    }
    found = {name: after(step, articles) for name, step in steps.items()}
    return {**found, "pending": [str(journal.pending())]}


def names() -> dict[str, Any]:
    """The names a trigger journals for a comment moved to another article, and the ORM's."""
    articles, comments = setup()
    comment = comments[articles[0].pk]
    with transaction.atomic():
        before = journal.pending()
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE testapp_comment SET article_id = %s WHERE id = %s",
                [articles[1].pk, comment.pk],
            )
            cursor.execute(f"SELECT names FROM {journal.TABLE} ORDER BY id DESC LIMIT 1")
            trigger = json.loads(cursor.fetchone()[0])  # type: ignore[index]
            samples = ["", "plain", "a b", "é/ü?&=%", "日本", "x'y\"z", "~._-:/"]
            cursor.execute(
                "SELECT " + ", ".join(["cachesweeper_encode(%s)"] * len(samples)), samples
            )
            encoded = list(cursor.fetchone())  # type: ignore[arg-type]
        transaction.set_rollback(True)
    with transaction.atomic():  # mid-migration: a column the trigger reads is renamed
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE testapp_article RENAME COLUMN author_id TO writer_id")
            cursor.execute("UPDATE testapp_article SET title = 'm' WHERE id = %s", [comment.pk])
            cursor.execute(f"SELECT names FROM {journal.TABLE} ORDER BY id DESC LIMIT 1")
            migrating = json.loads(cursor.fetchone()[0])  # type: ignore[index]
        transaction.set_rollback(True)
    # The same move through the ORM, in a transaction rolled back: what its signals sweep.
    from cachesweeper import registration

    swept: list[str] = []
    original = registration.sweep

    def spy(names: Any, *args: Any, **kwargs: Any) -> None:
        swept.extend(names)
        original(names, *args, **kwargs)

    registration.sweep = spy  # type: ignore[assignment]
    with transaction.atomic():
        comment.article = articles[1]
        comment.save()
        transaction.set_rollback(True)
    registration.sweep = original
    return {
        "before": before,
        "trigger": sorted(trigger),
        "migrating": sorted(migrating),
        "orm": sorted(swept),
        "encoded": encoded,
        "python": [encode(sample) for sample in samples],
    }


def bumps() -> dict[str, Any]:
    """How often an ORM save bumps its article's name, in a transaction and in autocommit."""
    articles, _ = setup()
    counted: Counter[str] = Counter()
    original = retries.attempt

    def spy(names: Any) -> Any:
        counted.update(names)
        return original(names)

    retries.attempt = spy  # type: ignore[assignment]
    import psycopg

    settings = connection.settings_dict
    ear = psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    )
    ear.execute("LISTEN cachesweeper")
    notified = {}

    def heard() -> int:
        return sum(1 for _ in ear.notifies(timeout=0.2))

    article = articles[0]
    name = f"testapp.article.{article.pk}"
    with transaction.atomic():
        article.title = "once"
        article.save()
        article.title = "twice"
        article.save()
    wait_done()
    time.sleep(0.3)
    in_transaction = counted[name]
    notified["in_transaction"] = heard()
    counted.clear()
    with transaction.atomic():
        article.save()
        Article.objects.filter(pk=articles[1].pk).update(title="after the save")
    wait_done()
    time.sleep(0.3)
    mixed = dict(counted)
    notified["mixed"] = heard()
    counted.clear()
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        article.save()  # autocommit: Django writes and commits before post_save
    autocommit_sql = [query["sql"].split(" ", 1)[0] for query in queries.captured_queries]
    wait_done()
    time.sleep(0.3)
    autocommit = counted[name]
    notified["autocommit"] = heard()
    # The save's commit cleared the session's marker: a write after it is due at once.
    counted.clear()
    Article.objects.filter(pk=articles[1].pk).update(title="after an autocommit save")
    notified["update_after_autocommit"] = heard()
    wait_done()
    after_autocommit = counted[f"testapp.article.{articles[1].pk}"]
    # Multi-table inheritance: two UPDATEs in the save's own transaction, both its process's.
    restaurant = Restaurant.objects.create(name="r")
    wait_done()
    heard()
    counted.clear()
    restaurant.serves = "soup"
    restaurant.save()
    wait_done()
    time.sleep(0.3)
    inherited = counted[f"testapp.restaurant.{restaurant.pk}"]
    notified["inherited"] = heard()
    # Ignored fields only: the signals sweep nothing, the trigger's row is swept once.
    counted.clear()
    restaurant.visits += 1
    restaurant.save(update_fields=["visits"])
    wait_done()
    time.sleep(0.3)
    ignored = counted[f"testapp.restaurant.{restaurant.pk}"]
    notified["ignored"] = heard()
    ear.close()
    retries.attempt = original  # type: ignore[assignment]
    return {
        "autocommit": autocommit,
        "autocommit_statements": autocommit_sql,
        "update_after_autocommit": after_autocommit,
        "inherited": inherited,
        "ignored": ignored,
        "notified": notified,
        "in_transaction": in_transaction,
        "mixed_saved": mixed.get(name, 0),
        "mixed_updated": mixed.get(f"testapp.article.{articles[1].pk}", 0),
    }


def latency(repeat: int, mode: str) -> dict[str, float]:
    """Seconds from the commit of a write to its bump landing, through this process's relay.

    ``mode``: ``notify``, a raw write woken by the trigger's NOTIFY; ``poll``, the
    same with the relay polling every ``INTERVAL``; ``dead``, an ORM save by a
    process SIGKILLed right after its commit (its row waits ``RELAY_DELAY``).
    """
    if mode != "notify":
        Listener.listening = lambda self: False  # type: ignore[method-assign]
    articles, _ = setup()
    name = f"testapp.article.{articles[0].pk}"
    cache = caches[conf.VERSION_CACHE]
    seconds = []
    for index in range(repeat):
        before = tokens.read_counters(cache, [name]).get(name)
        if mode == "dead":
            argv = ["-m", "tests.journal.scenario", "save", str(articles[0].pk), str(index)]
            died = subprocess.run([sys.executable, *argv, "--die"], check=False)
            assert died.returncode < 0, died
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE testapp_article SET title = %s WHERE id = %s",
                    [str(index), articles[0].pk],
                )
        started = time.perf_counter()
        while tokens.read_counters(cache, [name]).get(name) == before:
            if time.perf_counter() - started > DEADLINE:
                raise SystemExit("no bump")
            time.sleep(0.0005)
        seconds.append(time.perf_counter() - started)
        time.sleep(0.02)
    seconds.sort()
    return {
        "median": statistics.median(seconds),
        "p90": seconds[max(0, int(len(seconds) * 0.9) - 1)],
        "max": seconds[-1],
    }


def cost(repeat: int, sizes: list[int]) -> dict[str, dict[str, float]]:
    """What ``update()`` of N rows costs the writing process: statements, and time."""
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", run_syncdb=True, verbosity=0)
    ids = [Article.objects.create(title="t", body="old").pk for _ in range(max(sizes))]
    found = {}
    for size in sizes:
        runs = []
        for index in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                with transaction.atomic():
                    Article.objects.filter(pk__in=ids[:size]).update(body=str(index))
                runs.append(time.perf_counter() - started)
            with connection.cursor() as cursor:  # the relay's part, not timed
                cursor.execute(f"DELETE FROM {journal.TABLE}")
        journal_rows = sum(journal.TABLE in query["sql"] for query in queries.captured_queries)
        found[str(size)] = {
            "statements": len(queries.captured_queries),
            "journal": journal_rows,
            "seconds": statistics.median(runs),
        }
    return found


def status() -> dict[str, Any]:
    """``cachesweeper triggers`` and check W007: all current, then one dropped, one stale."""
    from io import StringIO

    from django.core import checks

    call_command("migrate", run_syncdb=True, verbosity=0)

    def listed() -> list[str]:
        out = StringIO()
        call_command("cachesweeper", "triggers", stdout=out)
        return out.getvalue().split("\n")[:-1]

    def warnings() -> list[str]:
        found = checks.run_checks(databases=["default"], include_deployment_checks=False)
        return [message.id or "" for message in found if message.id == "cachesweeper.W007"]

    before, warned_before = listed(), warnings()
    with connection.cursor() as cursor:
        cursor.execute('DROP TRIGGER "cachesweeper_update" ON testapp_comment')
        cursor.execute("COMMENT ON FUNCTION cachesweeper_testapp_vote() IS 'cachesweeper old'")
        cursor.execute(f"DROP TRIGGER cachesweeper_disarm ON {journal.TABLE}")
    after, warned_after = listed(), warnings()
    out = StringIO()
    call_command("cachesweeper", "triggers", "--install", stdout=out)
    return {
        "before": before,
        "warned_before": warned_before,
        "after": after,
        "warned_after": warned_after,
        "installed": out.getvalue().split("\n")[:-1],
    }


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "writes":
        say(writes())
    elif command == "names":
        say(names())
    elif command == "bumps":
        say(bumps())
    elif command == "status":
        say(status())
    elif command == "latency":
        say(latency(int(argv[1]), argv[2] if len(argv) > 2 else "notify"))
    elif command == "cost":
        say(cost(int(argv[1]), [int(size) for size in argv[2:]]))
    else:
        raise SystemExit(f"unknown scenario {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
