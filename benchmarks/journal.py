"""What the journal adds to a transaction: statements and time, SQLite and PostgreSQL.

    python -m benchmarks.journal [--repeat 50]

For each database (a SQLite file in WAL mode, a PostgreSQL cluster started on
a free loopback port by the test harness) and for ``JOURNAL`` on and off, a
fresh process times transactions that save 1 and 100 registered instances,
commit and sweep included (``tests/journal/scenario.py bench``): the median
of ``--repeat`` runs, and the statements of the last one. ``--rounds``
alternates off and on that many times, each in a fresh process, and reports
the median round, so that a busy moment of the machine does not land on one
side only. The version cache is LocMem, so that the figures are the
database's part alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.servers import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("1", "100")


def scenario(env: dict[str, str], module: str, *args: str) -> Any:
    """Run ``python -m module args`` in a process of its own; its last line is JSON."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(database: str, journal: bool, repeat: int, first: bool) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.journal.settings",
        "CS_DB": database,
        "CS_CACHE_KIND": "locmem",
        "CS_CACHE_LOCATION": "journal-bench",
        "CS_JOURNAL": "1" if journal else "0",
    }
    if first:
        scenario(env, "tests.journal.scenario", "migrate", "100")
    result: dict[str, Any] = scenario(env, "tests.journal.scenario", "bench", str(repeat), *SIZES)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    runs: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as scratch, PostgresServer() as server:
        assert isinstance(server, PostgresServer)
        databases: dict[tuple[str, bool], str] = {}
        for engine in ("sqlite", "postgres"):
            for journal in (False, True):
                name = f"bench_{engine}_{int(journal)}"
                if engine == "sqlite":
                    databases[engine, journal] = f"sqlite:{scratch}/{name}.sqlite3"
                else:
                    server.create_database(name)
                    databases[engine, journal] = (
                        f"postgres:{server.host}:{server.port}:{server.user}:{name}"
                    )
        for round_ in range(options.rounds):
            for (engine, journal), database in databases.items():
                figures = measure(database, journal, options.repeat, first=round_ == 0)
                for saves in SIZES:
                    runs.setdefault((engine, saves, journal), []).append(figures[saves])
    print("| database | saves | journal | statements | on the journal | median ms | added |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    medians = {key: statistics.median(r["seconds"] for r in found) for key, found in runs.items()}
    for (engine, saves, journal), found in runs.items():
        figure = found[-1]
        on_journal = figure["journal"] + figure["journal_after_commit"]
        seconds = medians[engine, saves, journal]
        added = f"{seconds / medians[engine, saves, False] - 1:+.0%}" if journal else ""
        print(
            f"| {engine} | {saves} | {'on' if journal else 'off'} | {figure['statements']} "
            f"| {on_journal} | {seconds * 1000:.2f} | {added} |"
        )


if __name__ == "__main__":
    main()
