"""A cache that is down is reported once per interval, not once per lookup.

Run on the server kinds (memcached, django-redis, Django's RedisCache) pointed at a
port where nothing listens; LocMem cannot be unreachable.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.test import override_settings

import cachesweeper
from tests.helpers import Counter, render

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("down_cache_backend"),
]

SOURCE = '{% cachesweeper "frontpage" 60 %}{{ counter.next }}{% endcachesweeper %}'


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cachesweeper" and r.levelno == level]


def test_one_warning_per_cache_and_every_traceback_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = Counter()
    with caplog.at_level(logging.DEBUG, logger="cachesweeper"):
        for rendered in range(1, 6):
            assert render(SOURCE, counter=counter) == str(rendered)  # uncached, never broken

    (warning,) = records(caplog, logging.WARNING)
    message = warning.getMessage()
    assert message.startswith("cachesweeper: cache unreachable ('default'), rendering uncached: ")
    assert message.endswith("(further failures within 60s are logged at DEBUG only)")
    assert warning.exc_info is None  # no traceback at WARNING
    tracebacks = [r for r in records(caplog, logging.DEBUG) if r.exc_info]
    assert len(tracebacks) == 5
    assert all("cache 'default' failed, rendering uncached" in r.getMessage() for r in tracebacks)


def test_the_next_warning_says_how_many_failures_were_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = Counter()
    with (
        override_settings(CACHESWEEPER={"WARNING_INTERVAL": 0.5}),
        caplog.at_level(logging.WARNING, logger="cachesweeper"),
    ):
        for _ in range(4):
            render(SOURCE, counter=counter)
        assert len(records(caplog, logging.WARNING)) == 1
        time.sleep(0.6)
        render(SOURCE, counter=counter)

    first, second = (r.getMessage() for r in records(caplog, logging.WARNING))
    assert "since the last warning" not in first
    assert "(3 more failures since the last warning, 1s ago; further failures" in second


def test_concurrent_failures_warn_once_and_are_all_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    interval = 8.0
    threads, each = 8, 10

    def lookups() -> None:
        for _ in range(each):
            render(SOURCE, counter=Counter())

    with (
        override_settings(CACHESWEEPER={"WARNING_INTERVAL": interval}),
        caplog.at_level(logging.WARNING, logger="cachesweeper"),
    ):
        workers = [threading.Thread(target=lookups) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        (first,) = records(caplog, logging.WARNING)
        time.sleep(max(0.0, first.created + interval - time.time() + 0.1))
        render(SOURCE, counter=Counter())

    second = records(caplog, logging.WARNING)[1].getMessage()
    assert f"({threads * each - 1} more failures since the last warning" in second


def test_warn_on_every_failure_with_an_interval_of_zero(caplog: pytest.LogCaptureFixture) -> None:
    with (
        override_settings(CACHESWEEPER={"WARNING_INTERVAL": 0}),
        caplog.at_level(logging.WARNING, logger="cachesweeper"),
    ):
        for _ in range(3):
            render(SOURCE, counter=Counter())
    messages = [w.getMessage() for w in records(caplog, logging.WARNING)]
    assert len(messages) == 3
    assert not any("since the last warning" in m or "further failures" in m for m in messages)


def test_every_lost_sweep_is_still_an_error_while_the_warning_is_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cachesweeper import retries

    retries.queue.first_delay = 60  # keep the background thread out of this test
    try:
        with caplog.at_level(logging.WARNING, logger="cachesweeper"):
            cachesweeper.invalidate_tag("first")
            cachesweeper.invalidate_tag("second")
    finally:
        retries.queue.first_delay = 0.5
    errors = [r.getMessage() for r in records(caplog, logging.ERROR)]
    assert len(errors) == 2
    assert "sweep of first; will retry" in errors[0] and "sweep of second; will retry" in errors[1]
    (warning,) = records(caplog, logging.WARNING)
    assert "cache unreachable ('default'), sweep not delivered yet" in warning.getMessage()
