"""Tests of the test harness itself: if these fail, no other result of the suite counts.

They check that each ``cache_backend`` really reaches its kind of store, that the call
log counts what it claims to count, that the servers are real, separate processes that
stop and come back, and that varnishd starts with the xkey vmod and serves a backend.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import django
import pytest
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

from tests.counting import CountingCacheMixin, calls_of, reset_calls
from tests.servers import (
    MemcachedServer,
    RedisServer,
    VarnishServer,
    cache_settings,
    free_port,
    need_binary,
    need_vmod,
    port_accepts,
)

# -- cache_backend -----------------------------------------------------------------------


def counting_cache() -> BaseCache:
    """``caches["default"]``, checked to be a counting backend (its log: ``calls_of()``)."""
    cache = caches["default"]
    assert isinstance(cache, CountingCacheMixin)
    return cache


def test_backend_is_the_requested_kind(cache_backend: str) -> None:
    expected = {
        "locmem": "CountingLocMemCache",
        "memcached": "CountingPyMemcacheCache",
        "django_redis": "CountingDjangoRedisCache",
        "redis": "CountingRedisCache",
    }[cache_backend]
    assert type(caches["default"]).__name__ == expected


def test_set_and_get_round_trip(cache_backend: str) -> None:
    cache = counting_cache()
    value = {"text": "héllo wörld", "n": 42, "bytes": b"\x00\xff"}
    cache.set("harness:value", value, 30)
    assert cache.get("harness:value") == value
    assert cache.get("harness:missing") is None
    assert calls_of() == ["set", "get", "get"]


def test_cache_is_empty_at_test_start(cache_backend: str) -> None:
    """Run twice per kind by the parametrization above: the fixture clears between tests."""
    cache = counting_cache()
    assert cache.get("harness:value") is None
    assert calls_of() == ["get"]


def test_get_many_counts_as_one_call(cache_backend: str) -> None:
    cache = counting_cache()
    cache.set_many({"harness:a": 1, "harness:b": 2, "harness:c": 3}, 30)
    reset_calls()
    found = cache.get_many(["harness:a", "harness:b", "harness:c", "harness:nope"])
    assert found == {"harness:a": 1, "harness:b": 2, "harness:c": 3}
    assert calls_of() == ["get_many"]


def test_incr_on_a_stored_int(cache_backend: str) -> None:
    cache = counting_cache()
    cache.set("harness:n", 5, None)
    assert cache.incr("harness:n") == 6
    assert cache.incr("harness:n", 10) == 16
    assert cache.decr("harness:n", 2) == 14
    assert cache.get("harness:n") == 14
    with pytest.raises(ValueError):
        cache.incr("harness:absent")
    assert calls_of() == ["set", "incr", "incr", "decr", "get", "incr"]


def test_add_is_atomic_first_writer_wins(cache_backend: str) -> None:
    cache = counting_cache()
    assert cache.add("harness:lock", "first", 30) is True
    assert cache.add("harness:lock", "second", 30) is False
    assert cache.get("harness:lock") == "first"


def test_log_is_shared_by_the_instances_of_other_threads(cache_backend: str) -> None:
    """Django gives each thread its own backend object; the log still sees all calls."""
    main = counting_cache()
    seen: list[BaseCache] = []

    def worker() -> None:
        other = counting_cache()
        seen.append(other)
        other.get("harness:from-thread")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(seen) == 1 and seen[0] is not main
    assert calls_of() == ["get"]


def test_async_calls_are_counted_honestly(cache_backend: str) -> None:
    """``aget`` is one call; before Django 6, BaseCache's ``aget_many`` is one ``aget``
    per key, and from Django 6 on it is one ``get_many``."""
    cache = counting_cache()

    async def scenario() -> object:
        await cache.aset("harness:x", "x", 30)
        await cache.aget("harness:x")
        return await cache.aget_many(["harness:x", "harness:y"])

    assert asyncio.run(scenario()) == {"harness:x": "x"}
    many = ["get_many"] if django.VERSION >= (6, 0) else ["aget", "aget"]
    assert calls_of() == ["aset", "aget", *many]


def test_down_backend_refuses_quickly(down_cache_backend: str) -> None:
    location = cache_settings_location()
    host, port = location.rsplit(":", 1)
    assert not port_accepts(host, int(port))
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - each client raises its own error type
        caches["default"].set("harness:k", "v", 30)
    assert time.monotonic() - started < 5


def cache_settings_location() -> str:
    from django.conf import settings

    location: str = settings.CACHES["default"]["LOCATION"]
    return location.removeprefix("redis://").removesuffix("/0")


def test_cache_settings_helper() -> None:
    assert cache_settings("redis", "127.0.0.1:7000")["LOCATION"] == "redis://127.0.0.1:7000/0"
    stock = cache_settings("memcached", "127.0.0.1:7001", counting=False, options={"x": 1})
    assert stock["BACKEND"] == "django.core.cache.backends.memcached.PyMemcacheCache"
    assert stock["OPTIONS"] == {"connect_timeout": 1.0, "timeout": 1.0, "x": 1}
    with pytest.raises(ValueError):
        cache_settings("filebased", "/tmp/x")


# -- server processes --------------------------------------------------------------------


def exchange(port: int, command: bytes, *, timeout: float = 2.0) -> bytes:
    """Send one raw protocol command and return the first chunk of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(command)
        return sock.recv(4096)


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def assert_separate_live_process(pid: int | None) -> None:
    assert pid is not None and pid != os.getpid()
    os.kill(pid, 0)  # raises if there is no such process


@pytest.mark.servers
def test_memcached_stops_and_restarts_on_the_same_port() -> None:
    need_binary("memcached")
    with MemcachedServer(memory_mb=8) as server:
        assert isinstance(server, MemcachedServer)
        assert server.location == f"127.0.0.1:{server.port}"
        first_pid = server.pid
        assert_separate_live_process(first_pid)
        assert exchange(server.port, b"version\r\n").startswith(b"VERSION ")
        assert b"STAT maxbytes 8388608\r\n" in exchange(server.port, b"stats settings\r\n")
        assert exchange(server.port, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"

        server.stop()
        assert not server.running
        assert_refused(server.port)

        port = server.port
        server.restart()
        assert server.port == port
        assert server.pid != first_pid
        assert_separate_live_process(server.pid)
        assert exchange(server.port, b"get k\r\n") == b"END\r\n"  # a new, empty server


@pytest.mark.servers
def test_redis_kill_restart_and_pause() -> None:
    need_binary("redis-server")
    with RedisServer(maxmemory="4mb", maxmemory_policy="allkeys-lru") as server:
        assert isinstance(server, RedisServer)
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert_separate_live_process(server.pid)
        assert exchange(server.port, b"PING\r\n") == b"+PONG\r\n"
        assert b"allkeys-lru" in exchange(server.port, b"CONFIG GET maxmemory-policy\r\n")
        assert exchange(server.port, b"SET k v\r\n") == b"+OK\r\n"

        server.pause()  # accepts connections, answers nothing: a hung server
        with pytest.raises(TimeoutError):
            exchange(server.port, b"PING\r\n", timeout=0.3)
        server.resume()
        assert exchange(server.port, b"GET k\r\n") == b"$1\r\nv\r\n"

        server.kill()
        assert_refused(server.port)
        server.restart()
        assert exchange(server.port, b"GET k\r\n") == b"$-1\r\n"  # no persistence

        server.stop()
        assert_refused(server.port)


@pytest.mark.parametrize("cache_backend", ["memcached", "django_redis", "redis"], indirect=True)
def test_session_servers_are_the_ones_the_backends_use(cache_backend: str) -> None:
    """The fixture's servers are real: a value written through Django is on the server."""
    location = cache_settings_location()
    port = int(location.rsplit(":", 1)[1])
    caches["default"].set("harness:raw", 123, 30)
    if cache_backend == "memcached":
        assert exchange(port, b"get :1:harness:raw\r\n").startswith(b"VALUE :1:harness:raw ")
    else:
        key = b":1:harness:raw"
        reply = exchange(port, b"EXISTS " + key + b"\r\n")
        assert reply == b":1\r\n"


# -- varnishd ----------------------------------------------------------------------------

XKEY_VCL = """\
vcl 4.1;

import xkey;

backend default {
    .host = "${BACKEND_HOST}";
    .port = "${BACKEND_PORT}";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        set req.http.n-gone = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Invalidated " + req.http.n-gone + " objects"));
    }
}
"""


class Backend:
    """A tiny origin server in a thread: answers every GET and counts the requests."""

    def __init__(self) -> None:
        self.hits = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.hits += 1
                body = f"hello from the backend: {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "public, max-age=60")
                self.send_header("xkey", "harness-tag")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Backend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend() as running:
        yield running


@pytest.mark.servers
def test_varnish_with_xkey_serves_caches_and_purges(backend: Backend, tmp_path: Path) -> None:
    need_binary("varnishd")
    need_vmod("xkey")
    vcl = tmp_path / "harness.vcl"
    vcl.write_text(XKEY_VCL)
    with VarnishServer(vcl, backend.port) as varnish:
        assert isinstance(varnish, VarnishServer)
        assert f'.port = "{backend.port}"' in varnish.vcl_path.read_text()
        assert_separate_live_process(varnish.pid)

        assert request(varnish.port, "GET", "/page") == (200, b"hello from the backend: /page")
        assert request(varnish.port, "GET", "/page")[1] == b"hello from the backend: /page"
        assert backend.hits == 1  # the second GET was a Varnish hit

        status, body = request(varnish.port, "PURGE", "/", {"xkey-purge": "harness-tag"})
        assert status == 200 and b"Invalidated 1 objects" in body
        request(varnish.port, "GET", "/page")
        assert backend.hits == 2  # purged by tag through vmod xkey

        varnish.stop()
        assert_refused(varnish.port)


def test_free_port_is_not_listening() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert not port_accepts("127.0.0.1", port)
