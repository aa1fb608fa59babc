"""Purge requests over plain HTTP, shared by the Varnish and Squid backends.

Only the standard library (``http.client``): one connection per cache
server and purge call, a timeout on every socket operation, and every server
tried even when an earlier one failed, so one dead cache does not keep the
others stale. Failures are collected into one :class:`PurgeFailed`, which the
purge worker retries (purges are idempotent, so re-purging the servers that
did succeed is harmless).
"""

from __future__ import annotations

import http.client
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.encoding import iri_to_uri

logger = logging.getLogger("cachesweeper.edges")

#: A Host header value: a DNS name or IPv4 address, or a bracketed IPv6 address, and a port.
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)

#: Characters no URL may carry into a request line (``urlsplit`` would silently drop some).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PurgeFailed(RuntimeError):
    """One or more cache servers did not confirm a purge (the worker retries it)."""

    def __init__(self, edge: str, failures: Sequence[tuple[str, str]]) -> None:
        self.edge = edge
        #: ``(server URL, what went wrong)`` for each failed server.
        self.failures = list(failures)
        details = "; ".join(f"{server}: {problem}" for server, problem in self.failures)
        super().__init__(f"{edge} purge failed on {len(self.failures)} server(s): {details}")


@dataclass(frozen=True)
class Server:
    """A cache server purges are sent to, from a base URL like ``http://127.0.0.1:6081``."""

    url: str
    secure: bool
    hostname: str
    port: int

    @classmethod
    def parse(cls, owner: str, url: object) -> Server:
        if not isinstance(url, str):
            raise ImproperlyConfigured(f"{owner}: servers must be URLs, got {url!r}")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or port == -1
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username
            or parts.password
        ):
            raise ImproperlyConfigured(
                f"{owner}: server {url!r} is not a base URL like 'http://127.0.0.1:6081'"
            )
        secure = parts.scheme == "https"
        return cls(url.rstrip("/"), secure, parts.hostname, port or (443 if secure else 80))

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.secure:
            return http.client.HTTPSConnection(self.hostname, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.hostname, self.port, timeout=timeout)


@dataclass(frozen=True)
class PurgeRequest:
    """One request to send to every server: ``PURGE <path>`` with ``headers``."""

    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "PURGE"

    def describe(self) -> str:
        extra = " ".join(f"{name}: {value[:60]}" for name, value in self.headers.items())
        return f"{self.method} {self.path} {extra}".rstrip()


def parse_servers(owner: str, servers: object) -> list[Server]:
    """Validate the ``servers`` option: a non-empty list of base URLs."""
    if isinstance(servers, str) or not isinstance(servers, (list, tuple)) or not servers:
        raise ImproperlyConfigured(
            f"{owner}: OPTIONS['servers'] must be a non-empty list of base URLs, "
            f"e.g. ['http://127.0.0.1:6081'], got {servers!r}"
        )
    return [Server.parse(owner, url) for url in servers]


def check_host(owner: str, host: object) -> str:
    """A public host name to send as ``Host``; nothing that could inject a header."""
    if not isinstance(host, str) or not _HOST.match(host):
        raise ImproperlyConfigured(f"{owner}: {host!r} is not a host name for the Host header")
    return host


def parse_hosts(owner: str, host: object) -> list[str]:
    """Validate the ``host`` option: ``None``, a host name, or a list of them."""
    if host is None:
        return []
    if isinstance(host, str):
        return [check_host(owner, host)]
    if isinstance(host, (list, tuple)) and host:
        return [check_host(owner, item) for item in host]
    raise ImproperlyConfigured(f"{owner}: OPTIONS['host'] must be a host name or a list of them")


def default_host() -> str | None:
    """The first ``ALLOWED_HOSTS`` entry that names one host (no ``*``, no ``.example.com``)."""
    for entry in settings.ALLOWED_HOSTS:
        if entry and "*" not in entry and not entry.startswith(".") and _HOST.match(entry):
            return str(entry)
    return None


def public_hosts(owner: str, configured: list[str], batch_host: str | None) -> list[str]:
    """Where URL purges must be addressed: never the cache's own address (it hashes on Host).

    The ``host`` option wins, then the host of the request that swept, then
    ``ALLOWED_HOSTS``. Without any, URL purges cannot be addressed: that is a
    configuration error, raised so that it is logged and not silently skipped.
    """
    if configured:
        return configured
    if batch_host:
        return [check_host(owner, batch_host)]
    found = default_host()
    if found is None:
        raise ImproperlyConfigured(
            f"{owner}: cannot tell the public host for URL purges; set OPTIONS['host'] "
            "or a non-wildcard entry in ALLOWED_HOSTS"
        )
    return [found]


def url_targets(
    owner: str, urls: Iterable[str], hosts: Callable[[], list[str]]
) -> Iterator[tuple[str, str]]:
    """``(Host, path)`` pairs for ``urls``: paths go to every public host, absolute URLs to theirs.

    Paths are IRI-encoded the way Django's ``reverse()`` encodes them, so a
    purge names the same URL a browser requested (spaces and non-ASCII are
    percent-encoded). A URL that cannot be sent as it is (control characters
    such as CR/LF, a relative path, another scheme) is logged as an error and
    skipped: it comes from ``purge_urls`` / ``get_absolute_url``, and raising
    would make the worker retry the whole batch forever.
    """
    for url in urls:
        target = _target(url)
        if target is None:
            logger.error(
                "cachesweeper: %s cannot purge %r: not a path or an http(s) URL", owner, url
            )
        elif target[0] is None:
            for host in hosts():
                yield host, target[1]
        else:
            yield target[0], target[1]


def _target(url: str) -> tuple[str | None, str] | None:
    """``(host or None, encoded path)`` for a sendable ``url``, else ``None``."""
    if _CONTROL.search(url):
        return None  # before urlsplit, which would silently drop CR, LF and tabs
    parts = urlsplit(url)
    path = iri_to_uri(parts.path or "/")
    if parts.query:
        path = f"{path}?{iri_to_uri(parts.query)}"
    if not path.startswith("/"):
        return None
    if not (parts.scheme or parts.netloc):
        return None, path
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not _HOST.match(host):
        return None
    return host, path


def pack(names: Sequence[str], separator: str, limit: int) -> list[str]:
    """Join ``names`` into as few header values as possible, each at most ``limit`` bytes."""
    values: list[str] = []
    current: list[str] = []
    size = 0
    for name in names:
        length = len(name.encode())
        if length > limit:
            raise ValueError(f"dependency name longer than {limit} bytes: {name[:80]!r}...")
        added = length if not current else size + len(separator) + length
        if current and added > limit:
            values.append(separator.join(current))
            current, size = [], 0
            added = length
        current.append(name)
        size = added
    if current:
        values.append(separator.join(current))
    return values


def send(
    edge: str,
    servers: Sequence[Server],
    requests: Sequence[PurgeRequest],
    *,
    ok: Callable[[int], bool],
    timeout: float,
) -> None:
    """Send every request to every server; raise :class:`PurgeFailed` listing each failure."""
    failures: list[tuple[str, str]] = []
    for server in servers:
        problem = _send_to(server, requests, ok, timeout)
        if problem is not None:
            failures.append((server.url, problem))
    if failures:
        raise PurgeFailed(edge, failures)


def _send_to(
    server: Server,
    requests: Sequence[PurgeRequest],
    ok: Callable[[int], bool],
    timeout: float,
) -> str | None:
    """Deliver ``requests`` on one connection; the first failure ends it (the rest are retried).

    ``http.client`` reconnects by itself when a server closes the connection.
    """
    connection = server.connect(timeout)
    try:
        for request in requests:
            try:
                connection.request(request.method, request.path, headers=dict(request.headers))
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                return f"{request.describe()}: {type(exc).__name__}: {exc}"
            if not ok(response.status):
                return f"{request.describe()}: HTTP {response.status} {response.reason}"
        return None
    finally:
        connection.close()
