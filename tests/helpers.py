"""Small helpers the behaviour tests share."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.db.models import Model
from django.template import engines
from django.test import Client

import cachesweeper
from cachesweeper import registry, signals, tokens
from tests.testapp.models import Article, Comment

#: A comment fragment that shows how often it was rendered.
COMMENT = (
    '{% cachesweeper comment 500 "comment.xml" %}'
    "{{ comment.text }} votes={{ comment.vote_total }} rendered={{ counter.next }}"
    "{% endcachesweeper %}"
)


class Counter:
    """Counts renders: ``{{ counter.next }}`` in a template increments it."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


def render(source: str, **context: Any) -> str:
    """Render a Django template string that has ``{% load cachesweeper %}`` prepended."""
    template = engines["django"].from_string("{% load cachesweeper %}" + source)
    return template.render(context).strip()


def calls(alias: str = "default") -> list[str]:
    """The cache calls (round trips) made on ``alias`` since the last :func:`reset`."""
    return list(caches[alias].calls)  # type: ignore[attr-defined]


def reset(alias: str = "default") -> None:
    caches[alias].reset_calls()  # type: ignore[attr-defined]


M = TypeVar("M", bound=Model)


def reloaded(instance: M) -> M:
    """``instance`` loaded again, as the next request or task would load it.

    Outside a request, content built from an instance loaded before a sweep
    of something it depends on is rendered but not stored (it may be older
    than the token): tests that expect storing after a sweep reload first.
    """
    return type(instance)._default_manager.get(pk=instance.pk)


@contextmanager
def registered(model: type[Model], **options: Any) -> Iterator[None]:
    """``register(model, **options)`` for the block; the registration it had comes back."""
    previous = registry._registry.get(model)
    cachesweeper.register(model, **options)
    try:
        yield
    finally:
        if previous is None:
            registry.remove(model)
            tokens.set_strategy(model, None)
        else:
            cachesweeper.register(
                model,
                using=previous.strategy,
                touch=previous.touch,
                tags=previous.tags,
                purge_urls=previous.purge_urls,
                ignore_fields=previous.ignore_fields,
                fields=previous.fields,
            )


@contextmanager
def swept() -> Iterator[list[str]]:
    """The names every sweep in the block bumped, in order."""
    names: list[str] = []

    def receiver(dependencies: list[str], **kwargs: Any) -> None:
        names.extend(dependencies)

    signals.swept.connect(receiver)
    try:
        yield names
    finally:
        signals.swept.disconnect(receiver)


@contextmanager
def missed_keys() -> Iterator[list[str]]:
    """The entry keys of the fragments and pages rendered (not served from an entry) inside
    the block."""
    keys: list[str] = []

    def receiver(key: str, **kwargs: Any) -> None:
        keys.append(key)

    signals.fragment_miss.connect(receiver)
    signals.page_miss.connect(receiver)
    try:
        yield keys
    finally:
        signals.fragment_miss.disconnect(receiver)
        signals.page_miss.disconnect(receiver)


def ttl_of(kind: str, key: str, alias: str = "default") -> float | None:
    """Seconds until ``key`` expires in the real store of ``alias``; ``None``: never.

    Asked of the server itself (memcached's ``mg``, Redis' ``TTL``), so an
    absolute timestamp passed as a timeout, or ``0``, shows as what it does.
    """
    cache = caches[alias]
    raw = cache.make_key(key)
    if kind == "locmem":
        expiry = cache._expire_info[raw]  # type: ignore[attr-defined]
        return None if expiry is None else float(expiry - time.time())
    if kind == "memcached":
        from pymemcache.client.base import Client

        host, port = settings.CACHES[alias]["LOCATION"].rsplit(":", 1)
        client = Client((host, int(port)))
        try:
            answer = client.raw_command(f"mg {raw} t".encode(), b"\r\n").decode()
        finally:
            client.close()
        assert answer.startswith("HD t"), answer
        seconds = int(answer.removeprefix("HD t"))
        return None if seconds == -1 else float(seconds)
    client = cache.client.get_client() if kind == "django_redis" else cache._cache.get_client(raw)  # type: ignore[attr-defined]
    seconds = client.ttl(raw)
    assert seconds != -2, f"{key} is not stored"
    return None if seconds == -1 else float(seconds)


def make_comments(count: int) -> list[Comment]:
    """``count`` comments ``c0``, ``c1``... on one new article, loaded as a request would."""
    article = Article.objects.create(title="Hello")
    created = [Comment.objects.create(article=article, text=f"c{i}") for i in range(count)]
    return [reloaded(comment) for comment in created]


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
