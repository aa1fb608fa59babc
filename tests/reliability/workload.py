"""The stale-read workload: writers commit new versions while readers render.

Run in its own process by ``test_stale_reads.py``::

    CS_DB_PATH=/tmp/x.sqlite3 CS_CACHE_KIND=memcached CS_CACHE_LOCATION=127.0.0.1:11211 \\
    DJANGO_SETTINGS_MODULE=tests.reliability.settings_wal python -m tests.reliability.workload

Writer threads each own some articles and, in ``transaction.atomic()``, load
one, store ``body = version + 1`` and hold the transaction open a moment
before committing (a reader may look in between). After the block returns,
the commit and its sweep are done, and the writer records the version as
*committed*. Reader threads snapshot the committed versions, then read, and
parse the versions they got back: a read that shows a version older than
the snapshot is **stale**. Reads:

``queryset_fragment``   ``{% cachesweeper articles %}`` on a lazy QuerySet
``instance_fragment``   ``{% cachesweeper article %}``, body loaded inside it
``page``                ``cache_page`` tagged with the article (``/article/<pk>/``)
``page_with_fragment``  ``cache_page`` on a page holding the QuerySet fragment
``eager_view``          a view (``/eager/<pk>/``) that loads the article in full and
                        then renders its fragment: data loaded *before* the token read
``eager_outside_request``  the same outside any request (a task, a command): the
                        instance's load time stands in for the request's start

Prints one JSON object: reads, stale reads and hit/miss counts per kind.
``CS_MODE=presweep`` sweeps *before* commit (pitfall 2 of DESIGN.md), a
control run showing that the workload does catch stale reads.
``CS_UNTIL_STALE=kind,kind`` ends the run early, once each of those kinds has
seen a stale read (``CS_DURATION`` is then the limit): stale reads are rare
events, and a fixed short run may miss one kind by chance.
``CS_MIN_READS=N`` runs on past ``CS_DURATION`` until every kind has been read
N times (for at most ``CS_LIMIT`` seconds, 60 by default), so that a slow
machine still gives the test the reads it counts on.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

KINDS = (
    "queryset_fragment",
    "instance_fragment",
    "page",
    "page_with_fragment",
    "eager_view",
    "eager_outside_request",
)

_PAIR = re.compile(r"(\d+)=(\d+);")


class Ledger:
    """The versions committed (and swept) so far, per article."""

    def __init__(self, pks: list[int]) -> None:
        self.committed = dict.fromkeys(pks, 0)
        self.lock = threading.Lock()

    def snapshot(self) -> dict[int, int]:
        with self.lock:
            return dict(self.committed)

    def commit(self, pk: int, version: int) -> None:
        with self.lock:
            self.committed[pk] = max(self.committed[pk], version)


class Tally:
    """Thread-safe counters, plus the read kind the current thread is doing."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.examples: list[str] = []

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[name] += amount

    def example(self, text: str) -> None:
        with self.lock:
            if len(self.examples) < 5:
                self.examples.append(text)

    def on_state(self, state: str) -> Callable[..., None]:
        def receiver(**kwargs: Any) -> None:
            kind = getattr(self.local, "kind", None)
            if kind is not None:
                self.add(f"{kind}.{state}")

        return receiver


def parse(text: str) -> dict[int, int]:
    return {int(pk): int(version) for pk, version in _PAIR.findall(text)}


def main() -> dict[str, Any]:
    import django

    django.setup()

    from django.core.cache import caches
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client

    from cachesweeper import signals, sweeps
    from tests.reliability import views
    from tests.testapp.models import Article

    duration = float(os.environ.get("CS_DURATION", "4"))
    mode = os.environ.get("CS_MODE", "correct")
    writers = int(os.environ.get("CS_WRITERS", "2"))
    readers = int(os.environ.get("CS_READERS", "4"))
    until_stale = [kind for kind in os.environ.get("CS_UNTIL_STALE", "").split(",") if kind]
    min_reads = int(os.environ.get("CS_MIN_READS", "0"))
    limit = float(os.environ.get("CS_LIMIT", "60"))

    call_command("migrate", run_syncdb=True, verbosity=0)
    caches["default"].clear()
    if mode == "presweep":
        # The bug this library exists to avoid: bump the tokens before the commit.
        def immediately(connection: Any, names: Any, urls: Any, saved: Any = None) -> None:
            sweeps.sweep_now(list(names), list(urls))

        sweeps._defer = immediately

    pks = [Article.objects.create(title=f"a{index}", body="0").pk for index in range(4)]
    connection.close()
    ledger = Ledger(pks)
    tally = Tally()
    receivers = [tally.on_state(state) for state in ("hit", "miss", "stale")]
    for served in (
        (signals.fragment_hit, signals.fragment_miss, signals.fragment_stale),
        (signals.page_hit, signals.page_miss, signals.page_stale),
    ):
        for signal, receiver in zip(served, receivers, strict=True):
            signal.connect(receiver, weak=False)

    start = time.monotonic()
    deadline = start + duration

    def running() -> bool:
        now = time.monotonic()
        if until_stale:
            if now >= deadline:
                return False
            with tally.lock:
                return not all(tally.counts[f"{kind}.stale_reads"] for kind in until_stale)
        if now < deadline:
            return True
        if now >= start + limit:
            return False
        with tally.lock:
            return any(tally.counts[f"{kind}.reads"] < min_reads for kind in KINDS)

    def write(index: int) -> None:
        rng = random.Random(index)
        mine = pks[index::writers]
        try:
            while running():
                pk = rng.choice(mine)
                with transaction.atomic():
                    article = Article.objects.get(pk=pk)
                    article.body = str(int(article.body) + 1)
                    article.save()
                    time.sleep(rng.uniform(0, 0.003))  # readers may look before the commit
                ledger.commit(pk, int(article.body))
                tally.add("writes")
                time.sleep(rng.uniform(0.002, 0.012))
        except Exception as error:
            tally.add("writer_errors")
            tally.example(f"writer: {error!r}")
        finally:
            connection.close()

    def read(index: int) -> None:
        rng = random.Random(1000 + index)
        client = Client()
        try:
            while running():
                kind = rng.choice(KINDS)
                pk = rng.choice(pks)
                floor = ledger.snapshot()
                tally.local.kind = kind
                try:
                    if kind == "queryset_fragment":
                        text = views.render_articles()
                    elif kind == "instance_fragment":
                        text = views.render_one(pk)
                    elif kind == "eager_outside_request":
                        text = views.render_task(Article.objects.get(pk=pk))
                    elif kind in ("page", "eager_view"):
                        url = f"/article/{pk}/" if kind == "page" else f"/eager/{pk}/"
                        response = client.get(url)
                        tally.add(f"status.{response.status_code}")
                        text = response.content.decode()
                    else:
                        response = client.get("/articles/")
                        tally.add(f"status.{response.status_code}")
                        text = response.content.decode()
                except Exception as error:
                    tally.add(f"{kind}.errors")
                    tally.example(f"{kind}: {error!r}")
                    continue
                finally:
                    tally.local.kind = None
                seen = parse(text)
                expected = (
                    set(pks) if "queryset" in kind or kind.endswith("with_fragment") else {pk}
                )
                if set(seen) != expected:
                    tally.add(f"{kind}.malformed")
                    tally.example(f"{kind}: {text!r}")
                    continue
                tally.add(f"{kind}.reads")
                behind = [item for item, version in seen.items() if version < floor[item]]
                if behind:
                    tally.add(f"{kind}.stale_reads")
                    tally.example(f"{kind}: saw {seen} after {floor} was committed")
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    threads += [threading.Thread(target=read, args=(index,)) for index in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start

    counts = tally.counts
    per_kind = {
        kind: {
            "reads": counts[f"{kind}.reads"],
            "stale_reads": counts[f"{kind}.stale_reads"],
            "hits": counts[f"{kind}.hit"],
            "misses": counts[f"{kind}.miss"],
            "errors": counts[f"{kind}.errors"],
            "malformed": counts[f"{kind}.malformed"],
        }
        for kind in KINDS
    }
    statuses = {key[7:]: value for key, value in counts.items() if key.startswith("status.")}
    return {
        "mode": mode,
        "seconds": round(elapsed, 2),
        "writes": counts["writes"],
        "writer_errors": counts["writer_errors"],
        "final": ledger.snapshot(),
        "kinds": per_kind,
        "statuses": statuses,
        "examples": tally.examples,
    }


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.reliability.settings_wal")
    result = main()
    sys.stdout.write(json.dumps(result) + "\n")
