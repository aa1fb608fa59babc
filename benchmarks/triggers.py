"""What database triggers cost and how fast they sweep, on PostgreSQL.

    python -m benchmarks.triggers [--repeat 50]

On a PostgreSQL cluster started on a free loopback port by the test harness,
with Redis as the version cache, each figure from a fresh process:

* the journal's cost to an ORM transaction saving 1 and 100 articles, and to one
  save outside a transaction, triggers off and on (``tests/journal/scenario.py bench``);
* ``update()`` of 1 and 100 rows in a transaction, triggers off and on: the
  statements the process sends (the trigger journals inside the write) and
  the median time (``tests/triggers/scenario.py cost``);
* the time from a commit to the token bump through the relay: a raw write
  woken by ``NOTIFY``, the same with the relay polling, and an ORM save by
  a process killed right after its commit (``tests/triggers/scenario.py latency``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.journal import scenario
from tests.servers import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    repeat = str(parser.parse_args().repeat)
    with PostgresServer() as server, RedisServer() as redis:
        assert isinstance(server, PostgresServer) and isinstance(redis, RedisServer)
        databases = iter(range(100))

        def env(triggers: bool) -> dict[str, str]:
            name = f"bench_triggers_{next(databases)}"
            server.create_database(name)
            return {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "DJANGO_SETTINGS_MODULE": "tests.journal.settings",
                "CS_DB": f"postgres:{server.host}:{server.port}:{server.user}:{name}",
                "CS_CACHE_KIND": "redis",
                "CS_CACHE_LOCATION": redis.url,
                "CS_TRIGGERS": "1" if triggers else "0",
            }

        print("| write | triggers | statements | of them on the journal | median ms |")
        print("| --- | --- | ---: | ---: | ---: |")
        for triggers in (False, True):
            site = env(triggers)
            scenario(site, "tests.journal.scenario", "migrate", "100")
            saves = scenario(
                site, "tests.journal.scenario", "bench", repeat, "1", "100", "autocommit"
            )
            for size, figure in saves.items():
                on_journal = figure["journal"] + figure["journal_after_commit"]
                write = "ORM save, autocommit" if size == "autocommit" else f"ORM save x{size}"
                print(
                    f"| {write} | {'on' if triggers else 'off'} | "
                    f"{figure['statements']} | {on_journal} | {figure['seconds'] * 1000:.2f} |"
                )
        for triggers in (False, True):
            updates = scenario(
                env(triggers), "tests.triggers.scenario", "cost", repeat, "1", "100"
            )
            for size, figure in updates.items():
                print(
                    f"| update() x{size} | {'on' if triggers else 'off'} | "
                    f"{figure['statements']} | {figure['journal']} | "
                    f"{figure['seconds'] * 1000:.2f} |"
                )
        print()
        print("| commit to bump | median ms | p90 ms | max ms |")
        print("| --- | ---: | ---: | ---: |")
        for mode, times in (("notify", repeat), ("poll", "10"), ("dead", "5")):
            found = scenario(env(True), "tests.triggers.scenario", "latency", times, mode)
            print(
                f"| {mode} | {found['median'] * 1000:.1f} | {found['p90'] * 1000:.1f} "
                f"| {found['max'] * 1000:.1f} |"
            )


if __name__ == "__main__":
    main()
