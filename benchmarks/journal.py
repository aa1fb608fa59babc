"""What the journal adds to a transaction: statements and time, SQLite and PostgreSQL.

    python -m benchmarks.journal [--repeat 50]

For each database (a SQLite file in WAL mode, a PostgreSQL cluster started on
a free loopback port by the test harness) and for ``JOURNAL`` on and off, a
fresh process times transactions that save 1 and 100 registered instances,
commit and sweep included (``tests/journal/scenario.py bench``): the median
of ``--repeat`` runs, and the statements of the last one. The version cache
is LocMem, so that the figures are the database's part alone.
"""

from __future__ import annotations

import argparse
import json
import os
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


def measure(database: str, journal: bool, repeat: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.journal.settings",
        "CS_DB": database,
        "CS_CACHE_KIND": "locmem",
        "CS_CACHE_LOCATION": "journal-bench",
        "CS_JOURNAL": "1" if journal else "0",
    }
    scenario(env, "tests.journal.scenario", "migrate", "100")
    result: dict[str, Any] = scenario(env, "tests.journal.scenario", "bench", str(repeat), *SIZES)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch, PostgresServer() as server:
        assert isinstance(server, PostgresServer)
        for engine in ("sqlite", "postgres"):
            for journal in (False, True):
                name = f"bench_{engine}_{int(journal)}"
                if engine == "sqlite":
                    database = f"sqlite:{scratch}/{name}.sqlite3"
                else:
                    server.create_database(name)
                    database = f"postgres:{server.host}:{server.port}:{server.user}:{name}"
                figures = measure(database, journal, options.repeat)
                for saves in SIZES:
                    rows.append((engine, saves, journal, figures[saves]))
    print("| database | saves | journal | statements | of them on the journal | median ms |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for engine, saves, journal, figure in rows:
        on_journal = figure["journal"] + figure["journal_after_commit"]
        print(
            f"| {engine} | {saves} | {'on' if journal else 'off'} | {figure['statements']} "
            f"| {on_journal} | {figure['seconds'] * 1000:.2f} |"
        )


if __name__ == "__main__":
    main()
