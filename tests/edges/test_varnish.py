"""Varnish (xkey) and Squid edges: what they send, and a real varnishd running the shipped VCL.

Two halves:

* **Requests** -- ``Varnish`` / ``Squid`` purge a local recording HTTP server:
  method, path, ``Host``, xkey headers, batching under the header limit,
  failures raised with server and status, option and name validation.
* **End to end** -- a real ``varnishd`` with ``cachesweeper/edges/varnish.vcl``
  in front of a Django live server with ``EdgeMiddleware``: a page is a MISS,
  then a HIT; a model save sweeps, the purge worker delivers, and the page is
  a MISS with the new content. Also URL purges, soft purges, purge-all, the
  header limits measured against Varnish itself, and an outage of the purge
  path (a TCP proxy that refuses connections) that the worker rides out.
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import cachesweeper
from cachesweeper.edges import PurgeBatch
from cachesweeper.edges.base import TooManyNames, coarse, purge_names
from cachesweeper.edges.httppurge import PurgeFailed
from cachesweeper.edges.squid import Squid
from cachesweeper.edges.varnish import HEADER_LIMIT, Varnish, vcl_path
from tests.servers import LOOPBACK, VarnishServer, free_port, need_binary, need_vmod

PUBLIC_HOST = "www.example.test"

# -- a recording HTTP server -------------------------------------------------------------


@dataclass
class Received:
    """One request a recording server got."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def host(self) -> str:
        return self.headers.get("host", "")


@dataclass
class RecordingServer:
    """An HTTP/1.1 server (keep-alive) that records every request and answers ``status``."""

    status: int = 200
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                # Any method: PURGE, GET, ... all go through here.
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline:
                    self.close_connection = True
                    return
                if not self.parse_request():
                    return
                recorder.received.append(
                    Received(
                        self.command,
                        self.path,
                        {name.lower(): value for name, value in self.headers.items()},
                    )
                )
                body = b"recorded"
                self.send_response(recorder.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture
def second_recorder() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


def dead_url() -> str:
    """A loopback URL where nothing listens: connection refused."""
    return f"http://{LOOPBACK}:{free_port()}"


# -- Varnish: tag purges -----------------------------------------------------------------


def test_names_are_purged_with_one_xkey_purge_request(recorder: RecordingServer) -> None:
    Varnish(servers=[recorder.url]).purge(PurgeBatch(names=["blog.article.42", "frontpage"]))
    [request] = recorder.received
    assert (request.method, request.path) == ("PURGE", "/")
    assert request.headers["xkey-purge"].split(" ") == purge_names(
        ["blog.article.42", "frontpage"]
    )
    # Each instance also purges the tag of responses whose names were coarsened.
    assert coarse("blog.article.42") in request.headers["xkey-purge"].split(" ")
    assert "xkey-softpurge" not in request.headers


def test_soft_purges_use_xkey_softpurge(recorder: RecordingServer) -> None:
    Varnish(servers=[recorder.url], soft=True).purge(PurgeBatch(names=["frontpage"]))
    [request] = recorder.received
    assert request.headers["xkey-softpurge"] == "frontpage"
    assert "xkey-purge" not in request.headers


def test_many_names_are_split_into_requests_under_the_header_limit(
    recorder: RecordingServer,
) -> None:
    names = [f"blog.article.{index}" for index in range(2000)]
    Varnish(servers=[recorder.url]).purge(PurgeBatch(names=names))
    values = [request.headers["xkey-purge"] for request in recorder.received]
    assert len(values) > 1
    assert all(len(value.encode()) <= HEADER_LIMIT for value in values)
    sent = [name for value in values for name in value.split(" ")]
    assert sent == purge_names(names)  # all of them, once, in order


def test_every_server_gets_every_request(
    recorder: RecordingServer, second_recorder: RecordingServer
) -> None:
    edge = Varnish(servers=[recorder.url, second_recorder.url])
    edge.purge(PurgeBatch(names=["frontpage"]))
    assert len(recorder.received) == len(second_recorder.received) == 1


def test_purge_everything_is_one_ban_request(recorder: RecordingServer) -> None:
    Varnish(servers=[recorder.url]).purge(PurgeBatch(names=["a"], everything=True))
    [request] = recorder.received
    assert (request.method, request.path) == ("PURGE", "/")
    assert request.headers["x-purge-all"] == "1"
    assert "xkey-purge" not in request.headers


def test_an_empty_batch_sends_nothing(recorder: RecordingServer) -> None:
    Varnish(servers=[recorder.url]).purge(PurgeBatch())
    Squid(servers=[recorder.url]).purge(PurgeBatch(names=["only-names"]))
    assert recorder.received == []


# -- Varnish and Squid: URL purges and the public host -----------------------------------


@pytest.mark.parametrize("edge_class", [Varnish, Squid])
def test_url_purges_carry_the_public_host_not_the_caches(
    recorder: RecordingServer, edge_class: type[Varnish] | type[Squid]
) -> None:
    edge = edge_class(servers=[recorder.url], host=PUBLIC_HOST)
    edge.purge(PurgeBatch(urls=["/blog/42/", "/blog/?page=2"], host="ignored.example"))
    assert [(r.method, r.path, r.host) for r in recorder.received] == [
        ("PURGE", "/blog/42/", PUBLIC_HOST),
        ("PURGE", "/blog/?page=2", PUBLIC_HOST),
    ]
    assert all(str(recorder.port) not in r.host for r in recorder.received)


@override_settings(ALLOWED_HOSTS=["*", ".example.org", "first.example", "second.example"])
def test_the_public_host_defaults_to_the_request_then_allowed_hosts(
    recorder: RecordingServer,
) -> None:
    edge = Varnish(servers=[recorder.url])
    edge.purge(PurgeBatch(urls=["/a/"], host="from-request.example"))
    edge.purge(PurgeBatch(urls=["/b/"]))
    assert [(r.path, r.host) for r in recorder.received] == [
        ("/a/", "from-request.example"),
        ("/b/", "first.example"),  # the first entry that names one host
    ]


@override_settings(ALLOWED_HOSTS=["*"])
def test_url_purges_without_a_known_host_are_a_configuration_error(
    recorder: RecordingServer,
) -> None:
    with pytest.raises(ImproperlyConfigured, match="public host"):
        Varnish(servers=[recorder.url]).purge(PurgeBatch(urls=["/a/"]))
    assert recorder.received == []


def test_several_public_hosts_and_absolute_urls(recorder: RecordingServer) -> None:
    edge = Squid(servers=[recorder.url], host=["example.test", "www.example.test"])
    edge.purge(PurgeBatch(urls=["/p/", "https://static.example.test:8443/s.css"]))
    assert [(r.path, r.host) for r in recorder.received] == [
        ("/p/", "example.test"),
        ("/p/", "www.example.test"),
        ("/s.css", "static.example.test:8443"),
    ]


def test_url_paths_are_encoded_like_django_urls(recorder: RecordingServer) -> None:
    edge = Varnish(servers=[recorder.url], host=PUBLIC_HOST)
    edge.purge(PurgeBatch(urls=["/café/a b/", "/already%20encoded/"]))
    assert [r.path for r in recorder.received] == ["/caf%C3%A9/a%20b/", "/already%20encoded/"]


@pytest.mark.parametrize(
    "url", ["/x\r\nX-Injected: 1", "/tab\there", "relative/path", "ftp://example.test/a"]
)
def test_urls_that_cannot_be_sent_are_logged_and_skipped(
    recorder: RecordingServer, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    """Not raised: the worker would retry the whole batch forever for one bad URL."""
    edge = Varnish(servers=[recorder.url], host=PUBLIC_HOST)
    with caplog.at_level(logging.ERROR, logger="cachesweeper.edges"):
        edge.purge(PurgeBatch(urls=["/ok/", url]))
    assert [r.path for r in recorder.received] == ["/ok/"]
    assert "cannot purge" in caplog.text
    assert all("x-injected" not in r.headers for r in recorder.received)


def test_soft_url_purges_ask_varnish_for_a_soft_purge(recorder: RecordingServer) -> None:
    Varnish(servers=[recorder.url], host=PUBLIC_HOST, soft=True).purge(PurgeBatch(urls=["/a/"]))
    [request] = recorder.received
    assert request.headers["x-purge-soft"] == "1"


@pytest.mark.django_db(transaction=True)
def test_get_purge_urls_is_used_instead_of_get_absolute_url_also_when_touched(
    recorder: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving a comment touches its article: the article's own purge URLs go to Squid."""
    from cachesweeper.edges import queue
    from tests.testapp.models import Article, Comment

    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())
    monkeypatch.setattr(
        Article, "get_purge_urls", lambda self: [f"/a/{self.pk}/", "/feed/"], raising=False
    )
    options = {"servers": [recorder.url], "host": PUBLIC_HOST}
    with override_settings(
        CACHESWEEPER={"EDGES": [{"BACKEND": "cachesweeper.edges.Squid", "OPTIONS": options}]}
    ):
        article = Article.objects.create(title="t")
        assert queue.purges.flush(5)
        assert sorted(r.path for r in recorder.received) == [f"/a/{article.pk}/", "/feed/"]
        recorder.received.clear()

        Comment.objects.create(article=article, text="first")
        assert queue.purges.flush(5)
    assert sorted((r.method, r.path, r.host) for r in recorder.received) == [
        ("PURGE", f"/a/{article.pk}/", PUBLIC_HOST),
        ("PURGE", "/feed/", PUBLIC_HOST),
    ]


# -- failures ----------------------------------------------------------------------------


def test_a_non_2xx_answer_raises_with_server_and_status(recorder: RecordingServer) -> None:
    recorder.status = 403
    with pytest.raises(PurgeFailed) as raised:
        Varnish(servers=[recorder.url]).purge(PurgeBatch(names=["frontpage"]))
    assert raised.value.failures[0][0] == recorder.url
    assert "HTTP 403" in str(raised.value)
    assert recorder.url in str(raised.value)


def test_one_dead_server_does_not_keep_the_others_stale(recorder: RecordingServer) -> None:
    dead = dead_url()
    with pytest.raises(PurgeFailed) as raised:
        Varnish(servers=[dead, recorder.url]).purge(PurgeBatch(names=["frontpage"]))
    assert [server for server, _ in raised.value.failures] == [dead]
    assert "ConnectionRefusedError" in str(raised.value)
    assert len(recorder.received) == 1


def test_a_hung_server_fails_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Varnish, "timeout", 0.3)
    with socket.socket() as hung:  # accepts connections (backlog), never answers
        hung.bind((LOOPBACK, 0))
        hung.listen()
        started = time.monotonic()
        with pytest.raises(PurgeFailed, match=r"TimeoutError|timed out"):
            Varnish(servers=[f"http://{LOOPBACK}:{hung.getsockname()[1]}"]).purge(
                PurgeBatch(names=["frontpage"])
            )
    assert time.monotonic() - started < 3


def test_squid_404_means_not_cached_which_is_success(recorder: RecordingServer) -> None:
    recorder.status = 404
    Squid(servers=[recorder.url], host=PUBLIC_HOST).purge(PurgeBatch(urls=["/gone/"]))
    recorder.status = 500
    with pytest.raises(PurgeFailed, match="HTTP 500"):
        Squid(servers=[recorder.url], host=PUBLIC_HOST).purge(PurgeBatch(urls=["/gone/"]))


def test_varnish_404_is_a_failure(recorder: RecordingServer) -> None:
    recorder.status = 404  # the VCL answers 200 to every purge: a 404 means no purge VCL
    with pytest.raises(PurgeFailed, match="HTTP 404"):
        Varnish(servers=[recorder.url], host=PUBLIC_HOST).purge(PurgeBatch(urls=["/a/"]))


def test_squid_cannot_purge_everything_and_says_so_without_raising(
    recorder: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cachesweeper.edges"):
        Squid(servers=[recorder.url], host=PUBLIC_HOST).purge(
            PurgeBatch(urls=["/still-purged/"], everything=True)
        )
    assert "Squid cannot purge everything" in caplog.text
    assert [r.path for r in recorder.received] == ["/still-purged/"]


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"servers": ["http://127.0.0.1:6081"], "hosts": "typo"},
        {"servers": ["http://127.0.0.1:6081"], "ttl": 5},
    ],
)
def test_unknown_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS"):
        Varnish(**options)
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS"):
        Squid(**{**options, "soft": True})


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"servers": []},
        {"servers": "http://127.0.0.1:6081"},  # a string, not a list
        {"servers": ["127.0.0.1:6081"]},
        {"servers": ["ftp://127.0.0.1:6081"]},
        {"servers": ["http://127.0.0.1:6081/purge"]},
        {"servers": ["http://127.0.0.1:notaport"]},
        {"servers": ["http://127.0.0.1:6081"], "host": "evil.example\r\nX-Injected: 1"},
        {"servers": ["http://127.0.0.1:6081"], "host": "two words"},
        {"servers": ["http://127.0.0.1:6081"], "host": []},
        {"servers": ["http://127.0.0.1:6081"], "soft": "yes"},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ImproperlyConfigured):
        Varnish(**options)


@pytest.mark.parametrize("name", ["two words", "line\r\nX-Injected: 1", "a,b", "tab\there", ""])
def test_unsafe_names_are_refused_before_anything_is_sent(
    recorder: RecordingServer, name: str
) -> None:
    edge = Varnish(servers=[recorder.url])
    with pytest.raises(ValueError, match="header-safe"):
        edge.purge(PurgeBatch(names=["fine", name]))
    with pytest.raises(ValueError, match="header-safe"):
        edge.response_headers(["fine", name], None)
    assert recorder.received == []


def test_response_headers_tag_responses_in_xkey() -> None:
    edge = Varnish(servers=["http://127.0.0.1:6081"])
    headers = edge.response_headers(["blog.article.42", "frontpage"], None)
    assert list(headers) == ["xkey"]
    tags = headers["xkey"].split(" ")
    assert {"blog.article.42", "frontpage"} <= set(tags)
    assert edge.response_headers([], None) == {}


def test_response_headers_stay_under_the_varnish_limit() -> None:
    edge = Varnish(servers=["http://127.0.0.1:6081"])
    many = [f"blog.article.{index}" for index in range(3000)]
    value = edge.response_headers(many, None)["xkey"]
    assert len(value.encode()) <= HEADER_LIMIT
    assert value.split(" ") == [coarse("blog.article.1"), "blog.article.*"]  # coarsened
    with pytest.raises(TooManyNames):
        edge.response_headers([f"tag-{index}" for index in range(3000)], None)


def test_backends_load_from_settings() -> None:
    from cachesweeper.edges.loading import configured

    edges = [
        {"BACKEND": "cachesweeper.edges.Varnish", "OPTIONS": {"servers": [dead_url()]}},
        {"BACKEND": "cachesweeper.edges.Squid", "OPTIONS": {"servers": [dead_url()]}},
    ]
    with override_settings(CACHESWEEPER={"EDGES": edges}):
        varnish, squid = configured()
    assert isinstance(varnish, Varnish) and isinstance(squid, Squid)
    assert cachesweeper.edges.Varnish is Varnish
    assert cachesweeper.edges.Squid is Squid


def test_the_vcl_ships_with_the_package() -> None:
    text = vcl_path().read_text()
    assert text.lstrip("#\n ").count("vcl 4.1;") == 1
    for needed in ("import xkey;", "xkey.purge(", "xkey.softpurge(", "X-Purge-All", "X-Cache"):
        assert needed in text


# == end to end with a real varnishd ======================================================


def vcl_for_tests(directory: Path) -> Path:
    """The shipped VCL with its backend pointed at ``VarnishServer``'s placeholders."""
    text, count = re.subn(
        r'(backend default \{.*?\.host = )"[^"]*"(;.*?\.port = )"[^"]*"',
        r'\1"${BACKEND_HOST}"\2"${BACKEND_PORT}"',
        vcl_path().read_text(),
        count=1,
        flags=re.S,
    )
    assert count == 1, "the shipped VCL has no 'backend default' with .host and .port"
    path = directory / "cachesweeper.vcl"
    path.write_text(text)
    return path


class TcpProxy:
    """Forwards TCP connections to ``target``; ``down()`` refuses new ones until ``up()``."""

    def __init__(self, target_port: int) -> None:
        self.target = (LOOPBACK, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Close the listening socket (connection refused) and cut open connections."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in self._connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            source.settimeout(None)
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class Page:
    status: int
    cache: str | None
    body: str
    xkey: str | None


def fetch(server: VarnishServer, path: str, **headers: str) -> Page:
    """GET ``path`` through Varnish as a visitor of the public site would."""
    connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": PUBLIC_HOST, **headers})
        response = connection.getresponse()
        body = response.read().decode()
        return Page(
            response.status, response.getheader("X-Cache"), body, response.getheader("xkey")
        )
    finally:
        connection.close()


def raw_purge(
    server: VarnishServer, path: str = "/", source: str | None = None, **headers: str
) -> int:
    connection = http.client.HTTPConnection(
        LOOPBACK, server.port, timeout=10, source_address=(source, 0) if source else None
    )
    try:
        connection.request(
            "PURGE", path, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@dataclass
class Site:
    """Varnish running the shipped VCL in front of a Django live server."""

    varnish: VarnishServer
    backend_port: int

    def edges(self, **options: Any) -> dict[str, Any]:
        """``CACHESWEEPER`` with one Varnish edge purging ``varnish`` (or ``servers``)."""
        options.setdefault("servers", [self.varnish.url])
        return {"EDGES": [{"BACKEND": "cachesweeper.edges.Varnish", "OPTIONS": options}]}


@pytest.fixture(scope="module")
def site(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One varnishd and one live server per module, with EdgeMiddleware in the chain."""
    need_binary("varnishd")
    need_vmod("xkey")
    from django.conf import settings

    with behind_varnish(
        tmp_path_factory.mktemp("vcl"),
        MIDDLEWARE=["cachesweeper.middleware.EdgeMiddleware", *settings.MIDDLEWARE],
        ROOT_URLCONF="tests.edges.varnish_site",
        ALLOWED_HOSTS=[PUBLIC_HOST, LOOPBACK, "localhost"],
        STATIC_URL="/static/",  # the live server's static handler needs one
    ) as (varnish, port):
        yield Site(varnish, port)


@contextmanager
def behind_varnish(vcl_dir: Path, **overrides: Any) -> Iterator[tuple[VarnishServer, int]]:
    """A live Django server under ``overrides``, and varnishd with the shipped VCL in front.

    Django's ``LiveServerThread`` (what pytest-django's session-wide
    ``live_server`` runs) builds its middleware chain when it starts, so a
    ``MIDDLEWARE`` override cannot reach an already running one: this starts
    its own, inside the override. Yields varnishd and the live server's port.
    """
    from django.db import connections
    from django.test.testcases import LiveServerThread, _StaticFilesHandler

    settings_override = override_settings(**overrides)
    settings_override.enable()
    shared = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()  # type: ignore[attr-defined]
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    thread = LiveServerThread(
        LOOPBACK, static_handler=_StaticFilesHandler, connections_override=shared
    )
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    varnish: VarnishServer | None = None
    try:
        if thread.error:
            raise thread.error
        varnish = VarnishServer(vcl_for_tests(vcl_dir), thread.port)
        varnish.start()
        yield varnish, thread.port
    finally:
        if varnish is not None:
            varnish.stop()
        thread.terminate()
        for conn in shared.values():
            conn.dec_thread_sharing()
        settings_override.disable()


@pytest.fixture
def fresh(site: Site, transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """An empty Varnish, fragment cache and purge queue for each test.

    The queue is this test's own (sweeps look ``queue.purges`` up when they
    dispatch), so work other tests left undeliverable cannot delay it.
    """
    from cachesweeper.edges import queue

    monkeypatch.setattr(queue, "FIRST_DELAY", 0.2)
    monkeypatch.setattr(queue, "purges", queue.PurgeQueue())
    assert raw_purge(site.varnish, X_Purge_All="1") == 200
    caches["default"].clear()
    yield site
    queue.purges.flush(10)


def make_comment(text: str) -> Any:
    from tests.testapp.models import Article, Comment

    return Comment.objects.create(article=Article.objects.create(title="t"), text=text)


def flush() -> None:
    from cachesweeper.edges import queue

    assert queue.purges.flush(10), "purges were not delivered"


@pytest.mark.servers
def test_varnish_caches_a_page_until_a_save_purges_its_tag(fresh: Site) -> None:
    comment = make_comment("first words")
    path = f"/comment/{comment.pk}/"
    with override_settings(CACHESWEEPER=fresh.edges()):
        assert (fetch(fresh.varnish, path).cache, fetch(fresh.varnish, path).cache) == (
            "MISS",
            "HIT",
        )
        assert "first words" in fetch(fresh.varnish, path).body

        comment.text = "second thoughts"
        comment.save()  # sweeps after commit; the worker purges Varnish
        flush()

        page = fetch(fresh.varnish, path)
        assert (page.cache, "second thoughts" in page.body) == ("MISS", True)
        assert fetch(fresh.varnish, path).cache == "HIT"


@pytest.mark.servers
def test_a_comment_purges_the_pages_listing_its_articles_comments_only(fresh: Site) -> None:
    """Field dependencies at the edge: ``testapp.comment.article=<pk>`` is the page's tag."""
    from tests.testapp.models import Article, Comment

    a, b = Article.objects.create(title="a"), Article.objects.create(title="b")
    paths = [f"/article/{a.pk}/comments/", f"/article/{b.pk}/comments/"]
    with override_settings(CACHESWEEPER=fresh.edges()):
        for path in paths:
            fetch(fresh.varnish, path)
        assert [fetch(fresh.varnish, path).cache for path in paths] == ["HIT", "HIT"]
        debug = fetch(fresh.varnish, paths[0], **{"X-Cachesweeper-Debug": "1"})
        assert debug.xkey is not None
        assert f"testapp.comment.article={a.pk}" in debug.xkey.split(" ")

        Comment.objects.create(article=a, text="on a")
        flush()
        on_a, on_b = (fetch(fresh.varnish, path) for path in paths)
        assert (on_a.cache, on_a.body) == ("MISS", "1 comments")
        assert (on_b.cache, on_b.body) == ("HIT", "0 comments")


@pytest.mark.servers
def test_a_save_purges_the_urls_registered_for_it(fresh: Site) -> None:
    from tests.testapp.models import Topic

    cachesweeper.register(Topic, purge_urls=lambda topic: [f"/topic/{topic.pk}/"])
    try:
        topic = Topic.objects.create(name="ocean")
        path = f"/topic/{topic.pk}/"
        with override_settings(CACHESWEEPER=fresh.edges()):
            assert fetch(fresh.varnish, path).cache == "MISS"
            page = fetch(fresh.varnish, path)
            assert (page.cache, page.xkey, page.body) == ("HIT", None, "topic ocean")

            topic.name = "desert"
            topic.save()  # no tags on this page: only the URL purge can remove it
            flush()

            page = fetch(fresh.varnish, path)
            assert (page.cache, page.body) == ("MISS", "topic desert")
    finally:
        cachesweeper.register(Topic)


@pytest.mark.servers
def test_a_save_purges_the_urls_of_get_purge_urls(
    fresh: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.testapp.models import Topic

    topic = Topic.objects.create(name="ocean")
    path = f"/topic/{topic.pk}/"
    monkeypatch.setattr(Topic, "get_purge_urls", lambda self: [path], raising=False)
    with override_settings(CACHESWEEPER=fresh.edges()):
        assert [fetch(fresh.varnish, path).cache for _ in range(2)] == ["MISS", "HIT"]

        topic.name = "desert"
        topic.save()  # the page has no tags: only get_purge_urls() can name it
        flush()

        page = fetch(fresh.varnish, path)
        assert (page.cache, page.body) == ("MISS", "topic desert")


@pytest.mark.servers
def test_cache_page_and_edge_cache_tags_let_varnish_purge_the_page(fresh: Site) -> None:
    from tests.testapp.models import Topic

    topic = Topic.objects.create(name="ocean")
    path = f"/tagged-topic/{topic.pk}/"
    with override_settings(CACHESWEEPER=fresh.edges()):
        assert [fetch(fresh.varnish, path).cache for _ in range(2)] == ["MISS", "HIT"]
        debug = fetch(fresh.varnish, path, **{"X-Cachesweeper-Debug": "1"})
        assert debug.xkey is not None
        assert {f"testapp.topic.{topic.pk}", "topics"} <= set(debug.xkey.split(" "))

        topic.name = "desert"
        topic.save()  # the instance named by cache_page(tags=...)
        flush()
        page = fetch(fresh.varnish, path)
        assert (page.cache, page.body) == ("MISS", "tagged topic desert")

        assert fetch(fresh.varnish, path).cache == "HIT"
        cachesweeper.invalidate_tag("topics")  # the tag named by edge_cache(tags=...)
        flush()
        assert fetch(fresh.varnish, path).cache == "MISS"


@pytest.mark.servers
def test_soft_purges_serve_the_old_page_once_while_varnish_refetches(fresh: Site) -> None:
    comment = make_comment("old")
    path = f"/comment/{comment.pk}/"
    with override_settings(CACHESWEEPER=fresh.edges(soft=True)):
        fetch(fresh.varnish, path)
        comment.text = "new"
        comment.save()
        flush()
        stale = fetch(fresh.varnish, path)  # within grace: old copy, refetch in background
        assert (stale.cache, ">old<" in stale.body) == ("HIT", True)
        assert wait_for(lambda: ">new<" in fetch(fresh.varnish, path).body, timeout=5)


@pytest.mark.servers
def test_purge_everything_empties_varnish(fresh: Site) -> None:
    comments = [make_comment(f"c{index}") for index in range(3)]
    paths = [f"/comment/{comment.pk}/" for comment in comments]
    for path in paths:
        fetch(fresh.varnish, path)
    assert [fetch(fresh.varnish, path).cache for path in paths] == ["HIT"] * 3

    Varnish(servers=[fresh.varnish.url]).purge(PurgeBatch(everything=True))

    assert [fetch(fresh.varnish, path).cache for path in paths] == ["MISS"] * 3


@pytest.mark.servers
def test_the_vcl_caches_only_what_django_marks_cacheable_and_hides_xkey(fresh: Site) -> None:
    from tests.edges.varnish_site import CALLS

    before = CALLS["uncached"]
    assert [fetch(fresh.varnish, "/uncached/").cache for _ in range(2)] == ["MISS", "MISS"]
    assert CALLS["uncached"] == before + 2

    comment = make_comment("tagged")
    path = f"/comment/{comment.pk}/"
    with override_settings(CACHESWEEPER=fresh.edges()):
        assert fetch(fresh.varnish, path).xkey is None  # stripped for visitors
        debug = fetch(fresh.varnish, path, **{"X-Cachesweeper-Debug": "1"})
    assert debug.xkey is not None
    assert f"testapp.comment.{comment.pk}" in debug.xkey.split(" ")


@pytest.mark.servers
def test_purges_from_outside_the_acl_are_forbidden(fresh: Site) -> None:
    comment = make_comment("kept")
    path = f"/comment/{comment.pk}/"
    with override_settings(CACHESWEEPER=fresh.edges()):
        fetch(fresh.varnish, path)
    # 127.0.0.2 is loopback too, but not in the VCL's purgers ACL.
    assert raw_purge(fresh.varnish, source="127.0.0.2", X_Purge_All="1") == 403
    assert raw_purge(fresh.varnish, path, source="127.0.0.2", Host=PUBLIC_HOST) == 403
    assert fetch(fresh.varnish, path).cache == "HIT"
    assert fetch(fresh.varnish, path, **{"X-Cachesweeper-Debug": "1"}).xkey is not None
    outsider = http.client.HTTPConnection(
        LOOPBACK, fresh.varnish.port, timeout=10, source_address=("127.0.0.2", 0)
    )
    outsider.request("GET", path, headers={"Host": PUBLIC_HOST, "X-Cachesweeper-Debug": "1"})
    response = outsider.getresponse()
    response.read()
    outsider.close()
    assert response.getheader("xkey") is None  # the debug header is for purgers only


@pytest.mark.servers
def test_the_header_limits_hold_against_varnish_itself(fresh: Site) -> None:
    """Tag headers close to ``HEADER_LIMIT`` are accepted; more would be a 503 / 400."""
    from tests.edges.varnish_site import MANY_TAGS

    tag = len("bulk-tag-00000 ")
    MANY_TAGS["count"] = HEADER_LIMIT // tag  # the most that fit
    try:
        with override_settings(CACHESWEEPER=fresh.edges()):
            first, second = (
                fetch(fresh.varnish, "/many-tags/"),
                fetch(fresh.varnish, "/many-tags/"),
            )
            assert (first.status, first.cache, second.cache) == (200, "MISS", "HIT")
            debug = fetch(fresh.varnish, "/many-tags/", **{"X-Cachesweeper-Debug": "1"})
            assert debug.xkey is not None
            assert HEADER_LIMIT - tag < len(debug.xkey) <= HEADER_LIMIT

            # A purge of thousands of names takes several requests, each accepted.
            names = [f"bulk-tag-{index:05d}" for index in range(3000)]
            Varnish(servers=[fresh.varnish.url]).purge(PurgeBatch(names=names))
            assert fetch(fresh.varnish, "/many-tags/").cache == "MISS"
    finally:
        MANY_TAGS["count"] = 0


@pytest.mark.servers
def test_purges_survive_an_outage_of_the_purge_path(fresh: Site) -> None:
    """Varnish's purge address refuses connections while models change; nothing is lost."""
    from cachesweeper.edges import queue

    purges = queue.purges

    proxy = TcpProxy(fresh.varnish.port)
    try:
        comments = [make_comment(f"before {index}") for index in range(3)]
        paths = [f"/comment/{comment.pk}/" for comment in comments]
        with override_settings(CACHESWEEPER=fresh.edges(servers=[proxy.url])):
            for path in paths:
                fetch(fresh.varnish, path)
            failed_before = purges.stats.failed

            proxy.down()
            for index, comment in enumerate(comments):
                comment.text = f"after {index}"
                comment.save()
            assert wait_for(lambda: purges.stats.failed > failed_before, timeout=5)
            time.sleep(2.5)  # the outage goes on; visitors still get the old pages
            assert all(fetch(fresh.varnish, path).cache == "HIT" for path in paths)
            assert purges.pending() > 0

            proxy.up()
            # The worker's own retries deliver them (backoff, no flush needed).
            assert wait_for(lambda: purges.pending() == 0, timeout=15)
            for index, path in enumerate(paths):
                page = fetch(fresh.varnish, path)
                assert (page.cache, f"after {index}" in page.body) == ("MISS", True)
    finally:
        proxy.down()


@pytest.mark.servers
def test_a_sweep_that_missed_the_version_cache_purges_varnish_when_it_lands(
    fresh: Site, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Purged before its bump, Varnish would refetch the old entry from Django and keep it."""
    from cachesweeper.retries import RetryQueue
    from tests.reliability.proxy import CuttableProxy
    from tests.servers import cache_settings

    retries = RetryQueue()
    retries.first_delay = 60  # retried when the test says so
    monkeypatch.setattr("cachesweeper.retries.queue", retries)
    host, port = redis_server.location.rsplit(":", 1)
    proxy = CuttableProxy(host, int(port))
    cache = cache_settings("redis", proxy.url, counting=False, timeout=0.25)
    comment = make_comment("first words")
    path = f"/comment/{comment.pk}/"
    try:
        with override_settings(CACHES={"default": cache}, CACHESWEEPER=fresh.edges()):
            caches["default"].clear()
            assert [fetch(fresh.varnish, path).cache for _ in range(2)] == ["MISS", "HIT"]

            proxy.cut()
            comment.text = "second thoughts"
            comment.save()  # the bump fails and waits for its retry
            proxy.restore()
            flush()
            page = fetch(fresh.varnish, path)
            assert (page.cache, "first words" in page.body) == ("HIT", True)

            assert retries.flush() == []
            flush()
            page = fetch(fresh.varnish, path)
            assert (page.cache, "second thoughts" in page.body) == ("MISS", True)
    finally:
        proxy.close()


@pytest.mark.servers
def test_varnish_caches_an_anonymous_page_that_reads_the_user(fresh: Site) -> None:
    """Vary: Cookie from the session read; Varnish keeps one copy for cookie-less visitors."""
    from tests.edges.varnish_site import CALLS

    comment = make_comment("first words")
    path = f"/comment/{comment.pk}/login-link/"
    CALLS["comment_with_login_link"] = 0
    with override_settings(CACHESWEEPER=fresh.edges()):
        assert [fetch(fresh.varnish, path).cache for _ in range(3)] == ["MISS", "HIT", "HIT"]
        assert CALLS["comment_with_login_link"] == 1

        comment.text = "second thoughts"
        comment.save()
        flush()
        page = fetch(fresh.varnish, path)
        assert (page.cache, "second thoughts" in page.body) == ("MISS", True)
