"""Grace for pages: one regeneration per dog-pile, and a broken one never wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.test import Client

import cachesweeper
from tests.testapp import views

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("cache_backend")]


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    views.CALLS.clear()
    views.SLOW.update(delay=0.2, fail=False)
    yield
    views.SLOW.update(delay=0.2, fail=False)


def stampede(url: str, count: int = 20) -> list[tuple[int, str]]:
    """``count`` clients GET ``url`` at the same moment."""
    barrier = threading.Barrier(count)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def get() -> None:
        client = Client()
        barrier.wait()
        response = client.get(url)
        with lock:
            results.append((response.status_code, response.content.decode()))

    threads = [threading.Thread(target=get) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


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
