"""The WSGI page cache: pagecache's scenarios, and Django's sweeps reaching it."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings
from pymemcache.client.base import Client as MemcacheClient

from cachesweeper import entries
from cachesweeper.wsgi import PageCacheMiddleware
from tests.helpers import calls, reset
from tests.testapp import views
from tests.testapp.models import Article, Comment

Environ = dict[str, Any]


class App:
    """A plain WSGI app that counts calls per path; ``/slow`` can be held back."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.release = threading.Event()
        self.release.set()
        self.status = "200 OK"
        self.headers: list[tuple[str, str]] = []

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        self.calls[path] = self.calls.get(path, 0) + 1
        if path.startswith("/slow"):
            self.release.wait(10)
        start_response(self.status, [("Content-Type", "text/plain"), *self.headers])
        return [f"{path} #{self.calls[path]}".encode()]


Result = tuple[str, dict[str, str], bytes]


def call(app: Any, path: str, method: str = "GET", **environ: Any) -> Result:
    env: Environ = {"PATH_INFO": path, "REQUEST_METHOD": method, **environ}
    setup_testing_defaults(env)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    body = b"".join(app(env, start_response))
    return captured["status"], captured["headers"], body


@pytest.fixture
def memcache(memcached_server: Any) -> Iterator[MemcacheClient]:
    host, port = memcached_server.location.rsplit(":", 1)
    client = MemcacheClient((host, int(port)))
    client.flush_all()
    yield client
    client.close()


class DictClient:
    """A python-memcached-style client with only get/set/add/delete (no get_many)."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, float]] = {}

    def get(self, key: str) -> bytes | None:
        value, expires = self.data.get(key, (None, 0.0))
        return value if value is not None and (not expires or expires > time.time()) else None

    def set(self, key: str, value: bytes, time_: int = 0) -> bool:
        self.data[key] = (value, time.time() + time_ if time_ else 0.0)
        return True

    def add(self, key: str, value: bytes, time_: int = 0) -> bool:
        if self.get(key) is not None:
            return False
        return self.set(key, value, time_)

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None


@pytest.fixture(params=["pymemcache", "dict-client"])
def client(request: pytest.FixtureRequest) -> Any:
    if request.param == "pymemcache":
        return request.getfixturevalue("memcache")
    return DictClient()


def test_cached_prefix_runs_the_app_once_other_urls_every_time(client: Any) -> None:
    app = App()
    cached = PageCacheMiddleware(app, [("/cached", 60, 0)], client)

    assert call(cached, "/cached/page")[2] == b"/cached/page #1"
    assert call(cached, "/cached/page")[2] == b"/cached/page #1"
    assert call(cached, "/other")[2] == b"/other #1"
    assert call(cached, "/other")[2] == b"/other #2"
    assert call(cached, "/cachedx")[2] == b"/cachedx #1"
    assert call(cached, "/cachedx")[2] == b"/cachedx #2"  # not under /cached


def test_regex_rules(client: Any) -> None:
    import re

    app = App()
    cached = PageCacheMiddleware(app, [(re.compile(r"^/items/\d+$"), 60, 0)], client)
    call(cached, "/items/1")
    call(cached, "/items/1")
    call(cached, "/items/x")
    call(cached, "/items/x")
    assert app.calls == {"/items/1": 1, "/items/x": 2}


def test_ttl_expiry(client: Any) -> None:
    app = App()
    # Two seconds, not one: the hit must come within the TTL even on a busy machine,
    # and memcached counts expiry in whole seconds.
    cached = PageCacheMiddleware(app, [("/", 2, 0)], client)
    assert call(cached, "/page")[2] == b"/page #1"
    assert call(cached, "/page")[2] == b"/page #1"
    time.sleep(3.1)
    assert call(cached, "/page")[2] == b"/page #2"


def test_grace_serves_stale_while_one_request_regenerates(client: Any) -> None:
    app = App()
    cached = PageCacheMiddleware(app, [("/slow", 1, 30)], client)
    assert call(cached, "/slow")[2] == b"/slow #1"
    time.sleep(1.2)

    app.release.clear()
    results: dict[str, bytes] = {}
    regenerating = threading.Thread(target=lambda: results.update(slow=call(cached, "/slow")[2]))
    regenerating.start()
    deadline = time.monotonic() + 5
    while app.calls["/slow"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        _, headers, body = call(cached, "/slow")
        assert body == b"/slow #1"
        assert int(headers["Age"]) >= 1
    finally:
        app.release.set()
        regenerating.join(10)
    assert results["slow"] == b"/slow #2"
    assert app.calls["/slow"] == 2
    assert call(cached, "/slow")[2] == b"/slow #2"


@pytest.mark.parametrize(
    ("method", "environ", "status", "headers"),
    [
        ("POST", {}, "200 OK", []),
        ("GET", {"HTTP_COOKIE": "sessionid=abc"}, "200 OK", []),
        ("GET", {"HTTP_AUTHORIZATION": "Basic eDp5"}, "200 OK", []),
        ("GET", {}, "200 OK", [("Set-Cookie", "a=b")]),
        ("GET", {}, "200 OK", [("Cache-Control", "private")]),
        ("GET", {}, "200 OK", [("Vary", "Cookie")]),
        ("GET", {}, "500 Internal Server Error", []),
        ("GET", {}, "404 Not Found", []),
    ],
    ids=["post", "session", "authorization", "set-cookie", "private", "vary", "500", "404"],
)
def test_never_cached(
    client: Any, method: str, environ: Environ, status: str, headers: list[tuple[str, str]]
) -> None:
    app = App()
    app.status, app.headers = status, headers
    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)
    call(cached, "/page", method, **environ)
    result = call(cached, "/page", method, **environ)
    assert app.calls["/page"] == 2
    if headers:
        assert result[1][headers[0][0]] == headers[0][1]  # never stripped


def test_head_gets_headers_without_body(client: Any) -> None:
    app = App()
    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)
    call(cached, "/page")
    status, headers, body = call(cached, "/page", "HEAD")
    assert status == "200 OK" and body == b"" and headers["Content-Type"] == "text/plain"
    assert app.calls["/page"] == 1


def test_head_miss_sends_no_body_and_is_not_stored(client: Any) -> None:
    app = App()
    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)

    status, headers, body = call(cached, "/page", "HEAD")

    assert status == "200 OK" and body == b"" and headers["Content-Type"] == "text/plain"
    # The next GET gets the full page, and later requests are served from it.
    assert call(cached, "/page")[2] == b"/page #2"
    assert call(cached, "/page", "HEAD")[2] == b""
    assert call(cached, "/page")[2] == b"/page #2"
    assert app.calls["/page"] == 2


def test_a_head_response_is_never_replayed_to_a_get(client: Any) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answers HEAD itself, without the body, as some applications do."""
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"the page"]

    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)
    call(cached, "/page", "HEAD")
    call(cached, "/page", "HEAD")

    assert call(cached, "/page")[2] == b"the page"
    assert call(cached, "/page")[2] == b"the page"


def test_host_and_query_are_part_of_the_key(client: Any) -> None:
    app = App()
    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)
    call(cached, "/page", HTTP_HOST="a.example")
    call(cached, "/page", HTTP_HOST="b.example")
    call(cached, "/page", HTTP_HOST="a.example", QUERY_STRING="x=1&y=2")
    call(cached, "/page", HTTP_HOST="a.example", QUERY_STRING="y=2&x=1")
    assert app.calls["/page"] == 3


def test_a_host_in_other_letter_case_is_another_page(client: Any) -> None:
    """As for ``cache_page``: the application may show the host as it was sent."""
    app = App()
    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)
    call(cached, "/page", HTTP_HOST="a.example")
    call(cached, "/page", HTTP_HOST="A.Example")
    call(cached, "/page", HTTP_HOST="a.example")
    assert app.calls["/page"] == 2


def test_hop_by_hop_headers_are_neither_stored_nor_replayed(client: Any) -> None:
    app = App()
    app.headers = [("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("X-Kept", "1")]
    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)

    _, first, _ = call(cached, "/page")
    _, replayed, body = call(cached, "/page")

    assert body == b"/page #1"
    for headers in (first, replayed):
        assert headers["X-Kept"] == "1"
        assert "Connection" not in headers and "Keep-Alive" not in headers


def test_an_empty_cookie_header_is_a_visitor_without_a_session(client: Any) -> None:
    app = App()
    cached = PageCacheMiddleware(app, [("/", 60, 0)], client)
    call(cached, "/page", HTTP_COOKIE="")
    call(cached, "/page")
    call(cached, "/page", HTTP_COOKIE="theme=dark")
    assert app.calls["/page"] == 1
    call(cached, "/page", HTTP_COOKIE="theme=dark; sessionid=abc")
    assert app.calls["/page"] == 2


# -- in front of Django -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
def test_django_sweeps_reach_the_wsgi_cache() -> None:
    views.CALLS.clear()
    article = Article.objects.create(title="a")
    comment = Comment.objects.create(article=article, text="before")
    middleware = ["cachesweeper.middleware.EdgeMiddleware"]
    with override_settings(MIDDLEWARE=middleware):
        app = PageCacheMiddleware(WSGIHandler(), [("/wsgi", 60, 0)], "default")
        url = f"/wsgi/fragment/{comment.pk}/"
        status, headers, body = call(app, url, HTTP_HOST="testserver")
        assert b"before" in body and status == "200 OK"
        assert "X-Cachesweeper-Deps" not in headers
        call(app, url, HTTP_HOST="testserver")
        assert views.CALLS["fragment_plain"] == 1

        reset()
        call(app, url, HTTP_HOST="testserver")
        assert calls() == ["get_many"]  # entry and tokens in one round trip

        comment.text = "after"
        comment.save()

        assert b"after" in call(app, url, HTTP_HOST="testserver")[2]
        assert views.CALLS["fragment_plain"] == 2


def test_plain_wsgi_app_without_django_settings(memcached_server: Any) -> None:
    """pagecache's use: no Django project at all, a bare pymemcache client."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        from wsgiref.util import setup_testing_defaults
        from pymemcache.client.base import Client
        from cachesweeper.wsgi import PageCacheMiddleware

        calls = []

        def app(environ, start_response):
            calls.append(environ["PATH_INFO"])
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"hello"]

        client = Client(("127.0.0.1", {memcached_server.port}))
        client.flush_all()
        cached = PageCacheMiddleware(app, [("/", 60, 5)], client)
        for _ in range(3):
            environ = {{"PATH_INFO": "/plain-wsgi"}}
            setup_testing_defaults(environ)
            body = b"".join(cached(environ, lambda status, headers: None))
            assert body == b"hello", body
        assert calls == ["/plain-wsgi"], calls
        from django.conf import settings
        assert not settings.configured
        print("ok")
        """
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


class Counted:
    """A cache client that notes the name of every call made on it (one call, one round trip)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted


def in_own_context(app: Any) -> Any:
    """``app`` run in a fresh ``contextvars`` context: nothing it renders reaches the
    caller's collector, so only the dependencies header can tell the WSGI layer."""

    def isolated(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        return contextvars.Context().run(app, environ, start_response)  # type: ignore[no-any-return]

    return isolated


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
@pytest.mark.parametrize("isolated", [False, True], ids=["same-context", "header-only"])
@pytest.mark.parametrize("local_copies", [8 * 2**20, 0], ids=["copies", "no-copies"])
def test_django_sweeps_reach_pages_kept_by_a_memcache_client(
    memcache: MemcacheClient, isolated: bool, local_copies: int
) -> None:
    views.CALLS.clear()
    comment = Comment.objects.create(article=Article.objects.create(title="a"), text="before")
    client = Counted(memcache)
    with override_settings(MIDDLEWARE=["cachesweeper.middleware.EdgeMiddleware"]):
        django_app = in_own_context(WSGIHandler()) if isolated else WSGIHandler()
        rules = [("/wsgi", 60, 0)]
        app = PageCacheMiddleware(django_app, rules, client, local_copies=local_copies)
        url = f"/wsgi/fragment/{comment.pk}/"
        assert b"before" in call(app, url, HTTP_HOST="testserver")[2]
        call(app, url, HTTP_HOST="testserver")
        assert views.CALLS["fragment_plain"] == 1

        client.calls.clear()
        reset()
        call(app, url, HTTP_HOST="testserver")
        if local_copies:
            # The process's copy, checked against its tokens: nothing read from the client.
            assert client.calls == [] and calls() == ["get_many"]
        else:
            # The page from the client, its tokens from the version cache: two round trips.
            assert client.calls == ["get_many"] and calls() == ["get_many"]

        # Another worker process: no copies, and the names learnt anew.
        entries._known.clear()
        other = PageCacheMiddleware(django_app, rules, client, local_copies=local_copies)
        call(other, url, HTTP_HOST="testserver")
        assert views.CALLS["fragment_plain"] == 1

        comment.text = "after"
        comment.save()

        for process in (app, other):
            assert b"after" in call(process, url, HTTP_HOST="testserver")[2]
            assert b"after" in call(process, url, HTTP_HOST="testserver")[2]
        assert views.CALLS["fragment_plain"] == 2


# -- copies kept in the process ------------------------------------------------------


def django_page(comment: Comment) -> str:
    return f"/wsgi/fragment/{comment.pk}/"


@pytest.fixture
def edge_app() -> Iterator[WSGIHandler]:
    """Django behind ``EdgeMiddleware``, which reports each page's dependencies."""
    views.CALLS.clear()
    with override_settings(MIDDLEWARE=["cachesweeper.middleware.EdgeMiddleware"]):
        yield WSGIHandler()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
def test_an_expired_copy_is_not_served(edge_app: WSGIHandler) -> None:
    comment = Comment.objects.create(article=Article.objects.create(title="a"), text="c")
    app = PageCacheMiddleware(edge_app, [("/wsgi", 1, 0)], "default")
    call(app, django_page(comment), HTTP_HOST="testserver")
    call(app, django_page(comment), HTTP_HOST="testserver")  # read, and copied
    assert len(app.copies or ()) == 1
    time.sleep(1.2)
    call(app, django_page(comment), HTTP_HOST="testserver")
    assert views.CALLS["fragment_plain"] == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
def test_a_copy_is_not_served_while_a_sweep_of_its_page_is_pending(
    edge_app: WSGIHandler,
) -> None:
    from cachesweeper import retries

    comment = Comment.objects.create(article=Article.objects.create(title="a"), text="c")
    app = PageCacheMiddleware(edge_app, [("/wsgi", 60, 0)], "default")
    call(app, django_page(comment), HTTP_HOST="testserver")
    call(app, django_page(comment), HTTP_HOST="testserver")
    # A sweep of the comment failed and waits for its retry (see retries.py).
    retries.queue.unconfirmed = frozenset({f"testapp.comment.{comment.pk}"})
    call(app, django_page(comment), HTTP_HOST="testserver")
    assert views.CALLS["fragment_plain"] == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("cache_backend")
def test_copies_stay_within_their_byte_limit(
    edge_app: WSGIHandler, memcache: MemcacheClient
) -> None:
    article = Article.objects.create(title="a")
    first, second = (Comment.objects.create(article=article, text="c") for _ in range(2))
    probe = PageCacheMiddleware(edge_app, [("/wsgi", 60, 0)], memcache)
    for comment in (first, second, first, second):
        call(probe, django_page(comment), HTTP_HOST="testserver")
    assert probe.copies is not None and len(probe.copies) == 2
    one_page = probe.copies.size // 2

    client = Counted(memcache)
    app = PageCacheMiddleware(edge_app, [("/wsgi", 60, 0)], client, local_copies=one_page + 10)
    for comment in (first, second, first, second):
        call(app, django_page(comment), HTTP_HOST="testserver")
    assert app.copies is not None and len(app.copies) == 1
    assert app.copies.size <= one_page + 10
    client.calls.clear()
    call(app, django_page(second), HTTP_HOST="testserver")  # the copy kept: the latest
    call(app, django_page(first), HTTP_HOST="testserver")  # dropped for lack of room
    assert client.calls == ["get_many"]
    assert views.CALLS["fragment_plain"] == 2


def test_pages_without_dependencies_are_not_copied(memcache: MemcacheClient) -> None:
    """A plain WSGI app reports none: its pages would be checked against nothing."""
    client = Counted(memcache)
    cached = PageCacheMiddleware(App(), [("/", 60, 0)], client)
    call(cached, "/page")
    client.calls.clear()
    call(cached, "/page")
    call(cached, "/page")
    assert cached.copies is not None and len(cached.copies) == 0
    assert client.calls == ["get", "get"]  # the page itself, every time


@pytest.mark.django_db(transaction=True)
def test_a_down_cache_renders_the_page_instead_of_serving_a_copy(
    edge_app: WSGIHandler, memcached_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.servers import cache_settings, free_port

    comment = Comment.objects.create(article=Article.objects.create(title="a"), text="hello")
    app = PageCacheMiddleware(edge_app, [("/wsgi", 60, 0)], "default")
    live = cache_settings("memcached", memcached_server.location)
    with override_settings(CACHES={"default": live}):
        call(app, django_page(comment), HTTP_HOST="testserver")
        call(app, django_page(comment), HTTP_HOST="testserver")
    down = cache_settings("memcached", f"127.0.0.1:{free_port()}", timeout=0.5)
    with override_settings(CACHES={"default": down}):
        status, _, body = call(app, django_page(comment), HTTP_HOST="testserver")
    assert status == "200 OK" and b"<p>hello</p>" in body
    assert views.CALLS["fragment_plain"] == 2
    assert "cache unreachable" in caplog.text
