"""A cache pointed at a node of a Redis Cluster: one clear error, and pages still render.

Django's ``RedisCache`` and django-redis speak to one server; a cluster node answers
them ``MOVED`` or ``CROSSSLOT`` for most keys. cachesweeper cannot make that work, but it
must say what is wrong instead of "cache unreachable" (``outages.py``), and fail open.
The cluster is real: three ``redis-server --cluster-enabled yes`` nodes, their slots
assigned and joined with ``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis
from django.test import override_settings

from cachesweeper import outages
from tests.helpers import render
from tests.servers import LOOPBACK, RedisServer, need_binary
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

SLOTS = 16384
BACKENDS = {
    "redis": "django.core.cache.backends.redis.RedisCache",
    "django_redis": "django_redis.cache.RedisCache",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisServer]]:
    need_binary("redis-server")
    nodes = [RedisServer(extra_args=["--cluster-enabled", "yes"]) for _ in range(3)]
    try:
        for node in nodes:
            node.start()
        clients = [redis.Redis(host=LOOPBACK, port=node.port) for node in nodes]
        share = SLOTS // len(nodes)
        for index, client in enumerate(clients):
            last = SLOTS - 1 if index == len(nodes) - 1 else (index + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for node in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", LOOPBACK, node.port)
        deadline = time.monotonic() + 20
        while any(c.cluster("info")["cluster_state"] != "ok" for c in clients):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.05)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_cache_on_a_cluster_node_gets_one_clear_error_and_pages_still_render(
    cluster: list[RedisServer], backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    outages.forget()
    entry = {"BACKEND": BACKENDS[backend], "LOCATION": cluster[0].url}
    source = (
        "{% load cachesweeper %}"
        "{% cachesweeper_for a in articles 60 %}{{ a.title }} {% endcachesweeper_for %}"
    )
    with (
        override_settings(CACHES={"default": entry}),
        caplog.at_level(logging.WARNING, "cachesweeper"),
    ):
        articles = [Article.objects.create(title=f"t{n}") for n in range(6)]
        for _ in range(3):
            assert render(source, articles=articles) == " ".join(f"t{n}" for n in range(6))
    messages = [record.getMessage() for record in caplog.records if record.name == "cachesweeper"]
    assert messages, "the cluster's answers must be reported"
    assert any("node of a Redis Cluster" in message for message in messages), messages
    assert not any("cache unreachable" in message for message in messages), messages
