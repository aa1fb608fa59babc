"""One step of a journal test, run in a process of its own (see ``tests/journal/settings.py``).

    python -m tests.journal.scenario migrate 3        # migrate, create 3 articles "old"
    python -m tests.journal.scenario save 1 new       # save article 1 in a transaction
    python -m tests.journal.scenario save 1 new --die # SIGKILLed after commit, before its sweep
    python -m tests.journal.scenario save-all new 1 2 3 --stay
                                                      # one transaction each, then stay alive
    python -m tests.journal.scenario read 1 2 3       # render each article's fragment
    python -m tests.journal.scenario live             # sweep once (the relay starts), stay alive
    python -m tests.journal.scenario live --no-polling
                                  # the same; the relay then replays only when a NOTIFY wakes it
    python -m tests.journal.scenario fill 300         # journal 300 sweeps of names "fill.N"
    python -m tests.journal.scenario rollback 1       # a transaction that saves, then rolls back
    python -m tests.journal.scenario count 1 100      # journal statements for 1 and 100 saves
    python -m tests.journal.scenario bench 50 1 100   # the same, median time of 50 each
    python -m tests.journal.scenario bench 50 autocommit  # one save outside a transaction

Prints one JSON line (after "ready" for the processes that stay). ``--stay``
and ``live`` wait for SIGTERM and then exit normally, running the exit hooks
as a web server's worker does on a graceful restart.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.journal.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.template import engines  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from cachesweeper import invalidate_tag, journal, relay  # noqa: E402
from cachesweeper.journal import TABLE  # noqa: E402
from tests.testapp.models import Article  # noqa: E402

FRAGMENT = (
    '{% load cachesweeper %}{% cachesweeper article 600 "journal" %}'
    "{{ article.body }}{% endcachesweeper %}"
)


def say(value: Any) -> None:
    print(json.dumps(value), flush=True)


def stay() -> None:
    """Wait for SIGTERM, then exit normally (exit hooks run)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *args: stop.set())
    say("ready")
    while not stop.wait(0.05):
        pass
    sys.exit(0)


def save(pk: int, body: str, die: bool = False) -> None:
    with transaction.atomic():
        if die:  # registered first, so it runs right after the commit, before the sweep
            transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
        article = Article.objects.get(pk=pk)
        article.body = body
        article.save()


def autocommit_statements() -> dict[str, float]:
    """The same for one save outside a transaction (Django commits it before ``post_save``)."""
    article = Article.objects.order_by("pk").first()
    assert article is not None
    journal.usable(connection.alias)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        article.save()
        seconds = time.perf_counter() - started
    sql = [query["sql"] for query in queries.captured_queries]
    return {
        "statements": len(sql),
        "journal": sum(TABLE in text for text in sql),
        "journal_after_commit": 0,  # no transaction: nothing is journaled unless a bump fails
        "seconds": seconds,
    }


def journal_statements(saves: int) -> dict[str, float]:
    """Statements (all, and on the journal table, in and after the transaction) and seconds
    of one transaction saving ``saves`` articles, its commit and sweep included.
    """
    articles = list(Article.objects.order_by("pk")[:saves])
    journal.usable(connection.alias)  # looked up once per process: not part of the cost
    committed: list[int] = []
    connection.queries_log.clear()  # indexes below count from here (the log is capped)
    with CaptureQueriesContext(connection):
        started = time.perf_counter()
        with transaction.atomic():
            # Registered first, so it runs at the commit, before the sweep.
            transaction.on_commit(lambda: committed.append(len(connection.queries)))
            for article in articles:
                article.save()
        seconds = time.perf_counter() - started
    inside = [query["sql"] for query in connection.queries[: committed[0]]]
    after = [query["sql"] for query in connection.queries[committed[0] :]]
    return {
        "statements": len(inside) + len(after),
        "journal": sum(TABLE in sql for sql in inside),
        "journal_after_commit": sum(TABLE in sql for sql in after),
        "seconds": seconds,
    }


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "migrate":
        call_command("migrate", run_syncdb=True, verbosity=0)
        say([Article.objects.create(title=f"a{i}", body="old").pk for i in range(int(args[0]))])
    elif command == "save":
        save(int(args[0]), args[1], die="--die" in args)
        say(journal.pending())
    elif command == "save-all":
        body, pks = args[0], [int(pk) for pk in args[1:] if pk != "--stay"]
        for pk in pks:
            save(pk, body)
        say(journal.pending())
        if "--stay" in args:
            stay()
    elif command == "read":
        template = engines["django"].from_string(FRAGMENT)
        say({pk: template.render({"article": Article.objects.get(pk=pk)}) for pk in args})
    elif command == "live":
        if "--no-polling" in args:
            relay.INTERVAL = 3600.0  # read by the relay thread each time it schedules a replay
        invalidate_tag("journal-live")
        stay()
    elif command == "fill":
        old = time.time() - 60
        for index in range(int(args[0])):
            journal._model().objects.create(
                names=json.dumps([f"fill.{index}"]), urls="[]", created_at=old
            )
        say(journal.pending())
    elif command == "rollback":
        try:
            with transaction.atomic():
                save(int(args[0]), "rolled back")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        say(journal.pending())
    elif command == "count":
        say({saves: journal_statements(int(saves)) for saves in args})
    elif command == "bench":  # bench REPEAT SAVES...: medians of REPEAT transactions each
        repeat, results = int(args[0]), {}
        for saves in args[1:]:  # a number of saves in a transaction, or "autocommit"
            measure = autocommit_statements if saves == "autocommit" else None
            runs = [
                measure() if measure else journal_statements(int(saves)) for _ in range(repeat)
            ]
            results[saves] = {**runs[-1], "seconds": statistics.median(r["seconds"] for r in runs)}
        say(results)
    else:
        raise SystemExit(f"unknown scenario {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
