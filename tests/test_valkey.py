"""django-valkey's single-server ``ValkeyCache`` on redis-server: it works as django-redis does.

It reads and writes in one round trip each (its ``get_many`` and ``set_many`` are
pipelines) and answers ``None`` from ``set_many``: nothing here needs a reader or a
writer of its own. Its cluster backend is ``tests/test_cluster.py``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings
from django_valkey.cache import ValkeyCache

import cachesweeper
from cachesweeper import reads, retries, writes
from tests.helpers import Counter, reloaded, render
from tests.servers import RedisServer
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

FRAGMENT = (
    "{% cachesweeper article 60 %}{{ article.title }} {{ counter.next }}{% endcachesweeper %}"
)
LIST = "{% cachesweeper_for a in articles 60 %}{{ counter.next }} {% endcachesweeper_for %}"


@pytest.fixture
def valkey(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """``default`` on ``ValkeyCache``; yields the pipelines and commands it sends."""
    if not redis_server.running:
        redis_server.restart()
    entry = {
        "BACKEND": "django_valkey.cache.ValkeyCache",
        "LOCATION": f"valkey://{redis_server.host}:{redis_server.port}/0",
        "OPTIONS": {"SOCKET_TIMEOUT": 1, "SOCKET_CONNECT_TIMEOUT": 1},
    }
    sent: list[str] = []
    with (
        override_settings(CACHES={"default": entry}),
        caplog.at_level(logging.WARNING, "cachesweeper"),
    ):
        cache = caches["default"]
        assert isinstance(cache, ValkeyCache)
        cache.clear()
        connection: Any = cache.client.get_client(write=True)
        pipeline, single = connection.pipeline, connection.execute_command

        def pipelined(*args: Any, **kwargs: Any) -> Any:
            made = pipeline(*args, **kwargs)
            execute = made.execute

            def counted(*args: Any, **kwargs: Any) -> Any:
                sent.append("pipeline")
                return execute(*args, **kwargs)

            made.execute = counted
            return made

        def command(*args: Any, **kwargs: Any) -> Any:
            sent.append(str(args[0]))
            return single(*args, **kwargs)

        connection.pipeline, connection.execute_command = pipelined, command
        yield sent
        del connection.pipeline, connection.execute_command
    complaints = [r.getMessage() for r in caplog.records if r.name == "cachesweeper"]
    assert not complaints, complaints


def test_fragments_and_lists_hit_in_one_round_trip_and_sweeps_land(valkey: list[str]) -> None:
    cache = caches["default"]
    assert reads.reader(cache) is reads.PLAIN
    assert writes.writer(cache) is writes.PLAIN
    counter = Counter()
    articles = [Article.objects.create(title=f"t{n}") for n in range(10)]
    assert render(FRAGMENT, article=articles[0], counter=counter) == "t0 1"
    render(LIST, articles=articles, counter=counter)
    valkey.clear()

    assert render(FRAGMENT, article=articles[0], counter=counter) == "t0 1"
    assert render(LIST, articles=articles, counter=counter) == " ".join(map(str, range(2, 12)))
    assert valkey == ["pipeline", "pipeline"]

    articles[0].title = "new"
    articles[0].save()
    assert retries.queue.unconfirmed == frozenset()
    assert render(FRAGMENT, article=reloaded(articles[0]), counter=counter) == "new 12"
    cachesweeper.invalidate_model(Article)
    assert retries.queue.unconfirmed == frozenset()
