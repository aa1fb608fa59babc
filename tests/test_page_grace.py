"""Grace for pages: one regeneration per dog-pile, and a broken one never wins."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, override_settings

import cachesweeper
from tests.helpers import stampede
from tests.testapp import views

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    views.CALLS.clear()
    views.SLOW.update(delay=0.2, fail=False)
    yield
    views.SLOW.update(delay=0.2, fail=False)
    views.GATE.set()  # never leave a held render behind


def body(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined,no-any-return]


def test_swept_slow_page_is_regenerated_once_for_twenty_requests(client: Client) -> None:
    assert client.get("/slow/").content == b"slow 1"
    cachesweeper.invalidate_tag("slow")

    results = stampede("/slow/")

    assert len(results) == 20
    assert all(status == 200 for status, _ in results)
    assert views.CALLS["slow"] == 2  # the first render and exactly one regeneration
    assert {text for _, text in results} <= {"slow 1", "slow 2"}
    assert client.get("/slow/").content == b"slow 2"


def test_cold_slow_page_is_rendered_once_for_twenty_requests() -> None:
    results = stampede("/slow/")

    assert [status for status, _ in results] == [200] * 20
    assert {text for _, text in results} == {"slow 1"}
    assert views.CALLS["slow"] == 1


def test_a_5xx_regeneration_never_replaces_the_good_page(client: Client) -> None:
    assert client.get("/slow/").content == b"slow 1"
    cachesweeper.invalidate_tag("slow")
    views.SLOW["fail"] = True

    response = client.get("/slow/")

    assert response.status_code == 200 and response.content == b"slow 1"
    views.SLOW["fail"] = False
    assert client.get("/slow/").content == b"slow 3"


def test_a_raising_regeneration_serves_the_stale_page(client: Client) -> None:
    assert client.get("/slow-raises/").content == b"raises 1"
    cachesweeper.invalidate_tag("slow")
    views.SLOW["fail"] = True

    response = client.get("/slow-raises/")

    assert response.status_code == 200 and response.content == b"raises 1"
    views.SLOW["fail"] = False
    assert client.get("/slow-raises/").content == b"raises 3"


@contextmanager
def regenerating(url: str, view: str) -> Iterator[list[str]]:
    """One request re-renders ``url`` in the background while the block runs.

    Yields the list that receives its page once it is done (after the block).
    """
    done: list[str] = []
    calls = views.CALLS[view]
    thread = threading.Thread(target=lambda: done.append(body(Client().get(url))))
    thread.start()
    deadline = time.monotonic() + 5
    while views.CALLS[view] == calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert views.CALLS[view] == calls + 1, "the regeneration did not start"
    try:
        yield done
    finally:
        thread.join(10)


def test_an_expired_page_is_served_stale_while_one_request_regenerates(client: Client) -> None:
    assert body(client.get("/slow-expiring/")) == "expiring 1"
    time.sleep(1.1)  # its timeout is one second: expired, not swept
    views.SLOW["delay"] = 1.0

    with regenerating("/slow-expiring/", "slow_expiring") as regenerated:
        results = stampede("/slow-expiring/", 5)

    assert results == [(200, "expiring 1")] * 5
    assert regenerated == ["expiring 2"]
    assert body(client.get("/slow-expiring/")) == "expiring 2"
    assert views.CALLS["slow_expiring"] == 2


# -- cold misses and COLD_WAIT ------------------------------------------------------------


@contextmanager
def first_render_held(url: str) -> Iterator[list[str]]:
    """A first request renders the cold ``gated`` page at ``url``, held inside the view
    until the block ends. Yields the list that then receives its page."""
    views.GATE.clear()
    views.ENTERED.clear()
    done: list[str] = []
    thread = threading.Thread(target=lambda: done.append(body(Client().get(url))))
    thread.start()
    assert views.ENTERED.wait(5), "the first render did not start"
    try:
        yield done
    finally:
        views.GATE.set()
        thread.join(10)


def timed_get(client: Client, url: str) -> tuple[str, float]:
    started = time.monotonic()
    text = body(client.get(url))
    return text, time.monotonic() - started


def test_a_cold_miss_gets_the_page_another_request_is_rendering(client: Client) -> None:
    waited: list[str] = []
    with first_render_held("/gated/") as first:
        waiter = threading.Thread(target=lambda: waited.append(body(Client().get("/gated/"))))
        waiter.start()
        time.sleep(0.3)  # the waiter is waiting; now the first render may finish
    waiter.join(10)

    assert first == waited == ["gated 1"]
    assert views.CALLS["gated"] == 1


def test_a_cold_miss_waits_at_most_cold_wait_then_renders_itself(client: Client) -> None:
    with override_settings(CACHESWEEPER={"COLD_WAIT": 0.5}), first_render_held("/gated/") as first:
        text, waited = timed_get(client, "/gated/")

    assert text == "gated 2"
    assert 0.45 <= waited < 1.5  # COLD_WAIT, not the default 2 s, and not the whole render
    assert first == ["gated 1"]


def test_cold_wait_zero_means_no_waiting(client: Client) -> None:
    with override_settings(CACHESWEEPER={"COLD_WAIT": 0}), first_render_held("/gated/") as first:
        text, waited = timed_get(client, "/gated/")

    assert text == "gated 2"
    assert waited < 0.4
    assert first == ["gated 1"]


# -- async views ------------------------------------------------------------------------------


def gather(url: str, count: int = 20) -> list[tuple[int, str]]:
    """``count`` concurrent requests on one event loop, through a fully async stack.

    Run from a fresh context, as an ASGI server runs requests: each request then
    gets its own cache connections, which it closes when it finishes.
    """

    async def requests() -> list[tuple[int, str]]:
        responses = await asyncio.gather(*(AsyncClient().get(url) for _ in range(count)))
        return [(response.status_code, body(response)) for response in responses]

    with override_settings(MIDDLEWARE=[]):
        return contextvars.Context().run(async_to_sync(requests))


def test_swept_async_page_is_served_stale_while_one_request_regenerates() -> None:
    assert gather("/async-slow/", 1) == [(200, "async-slow 1")]
    cachesweeper.invalidate_tag("slow")

    results = gather("/async-slow/")

    assert sorted(results) == [(200, "async-slow 1")] * 19 + [(200, "async-slow 2")]
    assert views.CALLS["async_slow"] == 2
    assert gather("/async-slow/", 1) == [(200, "async-slow 2")]


def test_cold_async_page_is_rendered_once_without_blocking_the_event_loop() -> None:
    results = gather("/async-slow/")

    assert results == [(200, "async-slow 1")] * 20
    assert views.CALLS["async_slow"] == 1
