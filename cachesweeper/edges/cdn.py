"""What the CDN API backends (Fastly, Cloudflare) share.

Tags: providers cap both the tag header and each tag in it, so names
are coarsened rather than sent in a form the provider would ignore (an
ignored tag is a purge that silently misses). Calls: one JSON POST with
the standard library, a timeout, no redirects (a redirect would carry the
API token to another host), and an exception for every failure, because
the purge worker retries on exceptions and only on exceptions.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from email.message import Message
from typing import IO, Any, ClassVar
from urllib.parse import quote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from cachesweeper.edges.base import CachePolicy, Edge, TooManyNames, check_name, coarse, fit
from cachesweeper.edges.httppurge import default_host

logger = logging.getLogger("cachesweeper")

#: Seconds one API call may take before it counts as failed (and is retried).
TIMEOUT = 10.0

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d+)?$")
# Characters kept as they are in a purged path: RFC 3986 path and query characters
# plus "%", so an already-encoded path is not encoded twice.
_PATH_SAFE = "/%:@!$&'()*+,;=?"


class CdnEdge(Edge):
    """What Fastly and Cloudflare share: tags within the CDN's limits, its own control header.

    A response the CDN must not store gets ``no-store`` and no tags: there is
    nothing to tag, and a page with too many names is not an error then.
    """

    control_header: ClassVar[str]
    #: Longest tag the provider accepts, in bytes.
    max_tag_bytes: ClassVar[int] = 1024
    #: Most tags one response may carry (``None``: only ``max_header_bytes`` caps them).
    max_tags: ClassVar[int | None] = None

    def response_headers(self, names: Sequence[str], policy: CachePolicy | None) -> dict[str, str]:
        names = [check_name(name) for name in names]  # refused even when not used
        headers: dict[str, str] = {}
        if names and storable(policy) and self.tag_header:
            headers[self.tag_header] = cdn_tags(
                names,
                edge=self.label,
                separator=self.separator,
                max_header_bytes=self.max_header_bytes,
                max_tag_bytes=self.max_tag_bytes,
                max_tags=self.max_tags,
            )
        if policy is not None:
            headers[self.control_header] = cdn_control(policy)
        return headers


class PurgeFailed(RuntimeError):
    """An edge API refused a purge or could not be reached; the worker retries it."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def cdn_control(policy: CachePolicy) -> str:
    """The CDN-only cache lifetime: ``max-age=N``, or ``no-store`` for anything not shared."""
    if policy.cacheability != "public" or policy.max_age <= 0:
        return "no-store"
    return f"max-age={policy.max_age}"


def storable(policy: CachePolicy | None) -> bool:
    return policy is None or cdn_control(policy) != "no-store"


def cdn_tags(
    names: Iterable[str],
    *,
    edge: str,
    separator: str,
    max_header_bytes: int,
    max_tag_bytes: int,
    max_tags: int | None = None,
) -> str:
    """The tag header value for ``names`` within the provider's header, tag and count caps.

    A name too long for one tag is replaced by its coarse tag up
    front; :func:`fit` then coarsens the rest if the header is still too big.
    Raises :class:`TooManyNames` when no such value exists (a named tag too
    long to send, or too many models): the response must not be cached there.
    """
    checked = [check_name(name) for name in names]
    shortened = [coarse(name) if len(name.encode()) > max_tag_bytes else name for name in checked]
    value = fit(shortened, separator, max_header_bytes)
    if value is not None and max_tags is not None and value.count(separator) >= max_tags:
        value = fit([coarse(name) for name in shortened], separator, max_header_bytes)
        if value is not None and value.count(separator) >= max_tags:
            value = None
    too_long = value is not None and any(
        len(tag.encode()) > max_tag_bytes for tag in value.split(separator)
    )
    if value is None or too_long:
        raise TooManyNames(edge)
    return value


def purgeable(names: Iterable[str], max_tag_bytes: int) -> list[str]:
    """Drop tags too long for the provider: :func:`cdn_tags` never puts them on a response."""
    return [name for name in names if len(name.encode()) <= max_tag_bytes]


def required(edge: str, option: str, value: Any) -> str:
    """A non-empty option without whitespace inside (it goes into a URL or a header)."""
    if value is None:
        raise ImproperlyConfigured(
            f"{edge} needs OPTIONS[{option!r}]: a non-empty string without whitespace"
        )
    if not isinstance(value, str):
        quoted = isinstance(value, int) and not isinstance(value, bool)
        raise ImproperlyConfigured(
            f"{edge} OPTIONS[{option!r}] has the wrong type: {type(value).__name__} "
            f"({value!r}); it must be a string" + (f", e.g. {str(value)!r}" if quoted else "")
        )
    text = value.strip()
    if not text or any(char.isspace() or not char.isprintable() for char in text):
        raise ImproperlyConfigured(
            f"{edge} OPTIONS[{option!r}] is {value!r}: it must be a non-empty string "
            "without whitespace"
        )
    return text


def api_endpoint(edge: str, value: Any) -> str:
    """The API base URL, ``https`` unless it is on this machine (tests, local proxies)."""
    text = required(edge, "endpoint", value).rstrip("/")
    parts = urlsplit(text)
    local = parts.hostname is not None and _is_loopback(parts.hostname)
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and local)):
        raise ImproperlyConfigured(
            f"{edge} OPTIONS['endpoint'] must be an https:// URL (http:// only for "
            f"localhost), not {text!r}: the API token travels with every call"
        )
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page(url: str, host: str | None, edge: str) -> tuple[str, str] | None:
    """``(host, path)`` of a URL to purge: a path on ``host``, or an absolute URL.

    Without the host of a request (a sweep from a command or a worker), paths
    go to the first plain ``ALLOWED_HOSTS`` entry, as Varnish's URL purges do.
    ``None`` (logged) when there is no usable host: the purge cannot be
    addressed, and retrying would not change that.
    """
    if url.lower().startswith(("http://", "https://")):
        parts = urlsplit(url)
        host, path = parts.netloc, parts.path + (f"?{parts.query}" if parts.query else "")
    else:
        path = url.split("#", 1)[0]
        host = host or default_host()
    if not host:
        logger.warning("cachesweeper: %s cannot purge %r: no host is known", edge, url)
        return None
    if not _HOST.match(host):
        logger.error("cachesweeper: %s cannot purge %r: bad host %r", edge, url, host)
        return None
    path = quote(path if path.startswith("/") else f"/{path}", safe=_PATH_SAFE)
    return host.lower(), path


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: it would carry the API token to another URL."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(
    url: str,
    headers: Mapping[str, str],
    body: Any = None,
    *,
    edge: str,
    timeout: float | None = None,
) -> Any:
    """POST ``body`` as JSON; the decoded JSON answer (``None`` if not JSON).

    Raises :class:`PurgeFailed` for a non-2xx answer (with the status and
    the start of the body) and for network errors and timeouts.
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=dict(headers), method="POST")
    what = f"{edge} POST {urlsplit(url).path}"
    try:
        with _opener.open(request, timeout=timeout or TIMEOUT) as response:
            status, raw = response.status, response.read(65536)
    except urllib.error.HTTPError as error:
        raw = error.read(65536) if error.fp is not None else b""
        error.close()
        raise PurgeFailed(f"{what}: HTTP {error.code}: {excerpt(raw)}", error.code) from None
    except (OSError, http.client.HTTPException, ValueError) as error:  # refused, timeout, …
        raise PurgeFailed(f"{what}: {error}") from error
    if not 200 <= status < 300:
        raise PurgeFailed(f"{what}: HTTP {status}: {excerpt(raw)}", status)
    try:
        return json.loads(raw)
    except ValueError:
        return None


def excerpt(raw: bytes, limit: int = 200) -> str:
    """The start of an answer's body, on one line, for an error message."""
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= limit else f"{text[:limit]}…"
