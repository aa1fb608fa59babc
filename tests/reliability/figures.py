"""Figures the reliability tests report: counts of operations, stale reads, faults.

Each test calls :func:`record` with a scenario name and its numbers. The
``conftest.py`` next to this module prints them all in the terminal summary
(no ``-s`` needed) and, when ``CACHESWEEPER_FIGURES`` names a file, writes
them there as JSON, ready for the README's "Guarantees" section.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

#: scenario -> figure name -> value, in the order the tests ran.
FIGURES: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()

#: Environment variable naming a JSON file to write the figures to.
ENV = "CACHESWEEPER_FIGURES"


def record(scenario: str, **figures: Any) -> dict[str, Any]:
    """Remember ``figures`` under ``scenario`` (merged with earlier ones) and return them."""
    with _lock:
        FIGURES.setdefault(scenario, {}).update(figures)
        return dict(FIGURES[scenario])


def summary() -> list[str]:
    lines = []
    for scenario, figures in FIGURES.items():
        values = ", ".join(f"{name}={_format(value)}" for name, value in figures.items())
        lines.append(f"{scenario}: {values}")
    return lines


def write(path: str | None = None) -> Path | None:
    """Write the figures as JSON to ``path`` (default: ``$CACHESWEEPER_FIGURES``)."""
    target = path or os.environ.get(ENV)
    if not target or not FIGURES:
        return None
    destination = Path(target)
    existing: dict[str, Any] = {}
    if destination.exists():
        try:
            existing = json.loads(destination.read_text())
        except ValueError:
            existing = {}
    existing.update(FIGURES)
    destination.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
    return destination


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
