"""Local stand-ins for the Fastly and Cloudflare purge APIs.

A :class:`FakeAPI` is a real HTTP server on 127.0.0.1 (a free port) that
records every request (method, path, headers, JSON body) and answers the way
the real API does, including its refusals: a wrong token, an unknown path,
a body that is not the documented JSON, or more keys / tags / URLs in one
call than the API accepts (Cloudflare: 100 tags, but 30 URLs, the limit of
free plans), a ``Fastly-Soft-Purge`` other than ``1``, an ``Accept`` header
that rules out JSON. So a backend that builds a request the real API
would refuse fails here too, on top of what the tests assert explicitly.

``mode`` makes it misbehave on purpose: ``"error"`` answers 500,
``"unsuccessful"`` answers 200 with ``{"success": false}`` (Cloudflare's
envelope) or ``{"status": "fail"}`` (Fastly), ``"redirect"`` answers 302,
``"slow"`` answers after ``delay`` seconds, ``"not_json"`` answers 200 with
an HTML page.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FASTLY_SERVICE = "SU1Z0isxPaozGVKXdv0eY"
FASTLY_TOKEN = "fastly-token-123"
CLOUDFLARE_ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
CLOUDFLARE_TOKEN = "cf-token-456"


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    headers: Message
    body: Any  # the decoded JSON body, or None
    raw: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class FakeAPI:
    kind: str  # "fastly" or "cloudflare"
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    mode: str = "ok"
    delay: float = 0.0
    #: Most items one call may carry (Fastly keys; Cloudflare tags).
    limit: int = 0
    #: Most URLs one Cloudflare call may carry (free plans allow 30).
    files_limit: int = 30

    def __post_init__(self) -> None:
        self.limit = self.limit or (256 if self.kind == "fastly" else 100)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def record(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(request)
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "redirect":
            return 302, {"Location": f"{self.url}/elsewhere"}, b""
        if self.mode == "error":
            return 500, {"Content-Type": "text/plain"}, b"Internal Server Error: upstream\nboom"
        if self.mode == "not_json":
            return 200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"
        status, body = (self._fastly if self.kind == "fastly" else self._cloudflare)(request)
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _fastly(self, request: Request) -> tuple[int, Any]:
        """Fastly's purge endpoints, as its API reference describes them."""
        if request.header("Fastly-Key") != FASTLY_TOKEN:
            return 401, {"msg": "Provided credentials are missing or invalid"}
        if request.method != "POST":
            return 405, {"msg": "Method not allowed"}
        if not _accepts_json(request):
            return 406, {"msg": "Not Acceptable"}
        if request.header("Fastly-Soft-Purge") not in (None, "1"):
            return 400, {"msg": "Bad request", "detail": "Fastly-Soft-Purge must be 1"}
        if self.mode == "unsuccessful":
            return 200, {"status": "fail", "reason": "purge refused"}
        service = f"/service/{FASTLY_SERVICE}"
        if request.path == f"{service}/purge":
            body = request.body if isinstance(request.body, dict) else {}
            keys = body.get("surrogate_keys")
            if request.header("Content-Type") != "application/json" or not isinstance(keys, list):
                return 400, {"msg": "Bad request", "detail": "surrogate_keys is required"}
            if len(keys) > self.limit:
                return 400, {
                    "status": "fail",
                    "reason": "Batch surrogate key request only supports up to 256 surrogate keys",
                }
            return 200, {key: f"{next(self._ids)}-1391560174-974124" for key in keys}
        if request.path == f"{service}/purge_all":
            return 200, {"status": "ok"}
        if request.path.startswith("/purge/"):
            return 200, {"status": "ok", "id": f"{next(self._ids)}-1391560174-974124"}
        return 404, {"msg": "Record not found", "detail": "Cannot find service"}

    def _cloudflare(self, request: Request) -> tuple[int, Any]:
        """Cloudflare's ``purge_cache`` endpoint, with its envelope answers."""
        if request.header("Authorization") != f"Bearer {CLOUDFLARE_TOKEN}":
            return 403, _failure(10000, "Authentication error")
        if request.method != "POST" or request.path != f"/zones/{CLOUDFLARE_ZONE}/purge_cache":
            return 404, _failure(7003, "No route for the URI")
        if not _accepts_json(request):
            return 406, _failure(10000, "Not Acceptable")
        body = request.body
        if request.header("Content-Type") != "application/json" or not isinstance(body, dict):
            return 400, _failure(1012, "Request must be JSON")
        kinds = [key for key in ("tags", "files", "purge_everything") if key in body]
        if len(kinds) != 1 or set(body) != set(kinds):
            return 400, _failure(1015, "Unsupported purge")
        items = body.get("tags") or body.get("files") or []
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            return 400, _failure(1012, "tags and files must be lists of strings")
        limit = self.files_limit if "files" in body else self.limit
        if len(items) > limit:
            return 400, _failure(1134, f"Only {limit} items per call")
        if "files" in body and not all(f.startswith(("http://", "https://")) for f in items):
            return 400, _failure(1012, "files must be absolute URLs")
        if self.mode == "unsuccessful":
            return 200, _failure(1100, "Purge failed")
        return 200, _envelope(True, result={"id": f"{next(self._ids):032x}"})

    def bodies(self) -> list[Any]:
        return [request.body for request in self.requests]


def _accepts_json(request: Request) -> bool:
    """No ``Accept`` header, or one that allows JSON (the APIs answer nothing else)."""
    accept = request.header("Accept")
    if accept is None:
        return True
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(types & {"application/json", "application/*", "*/*"})


def _envelope(success: bool, *, errors: Any = (), result: Any = None) -> dict[str, Any]:
    return {"success": success, "errors": list(errors), "messages": [], "result": result}


def _failure(code: int, message: str) -> dict[str, Any]:
    return _envelope(False, errors=[{"code": code, "message": message}])


def _handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            status, headers, answer = api.record(
                Request(self.command, self.path, self.headers, body, raw)
            )
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(answer))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)

        do_POST = do_GET = do_PURGE = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(kind: str, **settings: Any) -> Iterator[FakeAPI]:
    """Run a fake ``kind`` API on a free loopback port for the duration of the block."""
    api = FakeAPI(kind, **settings)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name=f"fake-{kind}", daemon=True
    )
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
