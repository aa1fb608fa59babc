"""Print the reliability figures after the run (and write them if asked to); fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cachesweeper.retries import RetryQueue
from tests.reliability import figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not figures.FIGURES:
        return
    terminalreporter.section("cachesweeper reliability figures")
    for line in figures.summary():
        terminalreporter.write_line(line)
    written = figures.write()
    if written is not None:
        terminalreporter.write_line(f"(written to {written})")


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[RetryQueue]:
    """A retry queue of the test's own, emptied afterwards.

    Its backoff can be changed freely: a retry thread sleeping out a long
    delay belongs to this queue, exits empty-handed, and never holds back the
    process's real queue in later tests.
    """
    queue = RetryQueue()
    monkeypatch.setattr("cachesweeper.retries.queue", queue)
    yield queue
    with queue._lock:
        queue._names.clear()
