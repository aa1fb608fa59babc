"""Memcached pools in one round trip: write to every server, then read every reply.

pymemcache's ``HashClient`` (Django's ``PyMemcacheCache`` with several
``LOCATION``\\ s) sends a multi-key call to one server, waits for its reply,
then goes on to the next: a read over three servers waits three round trips.
Here each server's request is written on its socket first, and the replies
are read afterwards, so the servers work and the network carries all of
them at once: about one round trip whatever the number of servers, without
a thread per call. (A server with no open connection yet is connected to
first, as pymemcache would: that handshake is not overlapped, once per
connection.)

Everything that decides *where* a key lives or *how* it is encoded is
pymemcache's own: the ring's hasher picks the server (so users' other calls
find the keys), and each server's ``Client`` checks and prefixes the keys,
serializes the values, parses the replies (``_readline``,
``_extract_value``, ``_raise_errors``) and owns the socket. Only the order of
sending and waiting changes.

Failures are handled as ``HashClient`` handles them when it does not ignore
exceptions: a connection error (``OSError``) marks the server failing with
the ring (so its retry and dead-server logic applies to the next calls), the
connection with a half-read reply is closed, the other servers' replies are
still read (their sockets stay usable), and the first error is raised.
Callers use this only while the ring counts no failing or dead server; the
ring's own calls handle the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:  # pymemcache is optional; without it there is no ring to use this module on
    from pymemcache.client.base import STORE_RESULTS_VALUE, VALID_STORE_RESULTS, Client, _readline
    from pymemcache.exceptions import MemcacheUnknownError
except ImportError:  # pragma: no cover
    pass

# One server's part of a call: its client, the bytes to send, how to read the reply.
Request = tuple[Any, bytes, Callable[[Any], Any]]


def usable(ring: Any) -> bool:
    """Whether ``ring`` has what this module uses: one plain pymemcache client (with
    its own socket) per server, a hasher, and the failure bookkeeping."""
    return (
        not getattr(ring, "use_pooling", True)
        and all(type(client) is Client for client in ring.clients.values())
        and hasattr(ring, "hasher")
        and hasattr(ring, "_mark_failed_server")
        and isinstance(getattr(ring, "_failed_clients", None), dict)
        and isinstance(getattr(ring, "_dead_clients", None), dict)
    )


class Placement:
    """Which server holds each key: the ring's hasher, its answers remembered.

    pymemcache's hasher runs a pure-Python MurmurHash3 once per key and server
    (a list of 100 over three servers: 303 hashes, about 1.5 ms). Its answer
    depends only on the key and the servers it holds, so it is kept while
    those stay the same (checked on every call; a hasher that does not show
    its servers is asked every time). One per reader, so one per thread.
    """

    LIMIT = 65_536  # keys remembered before starting afresh

    def __init__(self, ring: Any) -> None:
        self.ring = ring
        self.servers: tuple[str, ...] | None = None
        self.known: dict[str, str] = {}

    def groups(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """``keys`` grouped by server name (the ring's name, a key of ``ring.clients``)."""
        hasher = self.ring.hasher
        servers = getattr(hasher, "nodes", None)
        if not isinstance(servers, list):
            return by_node(keys, hasher.get_node)
        if tuple(servers) != self.servers or len(self.known) > self.LIMIT:
            self.servers = tuple(servers)
            self.known = {}
        known = self.known
        get_node = hasher.get_node

        def node_of(key: str) -> str:
            node = known.get(key)
            if node is None:
                node = known[key] = get_node(key)
            return node

        return by_node(keys, node_of)


def by_node(keys: Sequence[str], node_of: Callable[[str], str]) -> dict[str, list[str]]:
    """``keys`` grouped by ``node_of``: server name -> keys."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        node = node_of(key)
        if node in groups:
            groups[node].append(key)
        else:
            groups[node] = [key]
    return groups


def get_many(ring: Any, groups: Mapping[str, list[str]]) -> dict[str, Any]:
    """The values found for ``groups`` (server name -> keys), one ``get`` per server, at once."""
    requests: list[Request] = []
    for node, keys in groups.items():
        client = ring.clients[node]
        prefixed = [client.check_key(key, client.key_prefix) for key in keys]
        command = b"get " + b" ".join(prefixed) + b"\r\n"
        requests.append((client, command, _values_reader(prefixed, keys)))
    found: dict[str, Any] = {}
    for values in exchange(ring, requests):
        found.update(values)
    return found


def store(
    ring: Any, name: bytes, groups: Mapping[str, Mapping[str, Any]], expire: int
) -> dict[str, bool]:
    """Send ``name`` (``set``, ``add``) for every key, pipelined per server, at once.

    Returns whether each key was stored (``add`` does not store over an existing key).
    """
    requests: list[Request] = []
    for node, values in groups.items():
        client = ring.clients[node]
        expire_bytes = client._check_integer(expire, "expire")
        commands = []
        for key, value in values.items():
            prefixed = client.check_key(key, client.key_prefix)
            data, flags = client.serde.serialize(prefixed, value)
            if not isinstance(data, bytes):
                data = str(data).encode(client.encoding)
            head = b"%s %s %d %s %d\r\n" % (name, prefixed, flags, expire_bytes, len(data))
            commands.append(head + data + b"\r\n")
        requests.append((client, b"".join(commands), _stored_reader(name, list(values))))
    stored: dict[str, bool] = {}
    for results in exchange(ring, requests):
        stored.update(results)
    return stored


def exchange(ring: Any, requests: Sequence[Request]) -> list[Any]:
    """Send every request, then read every reply, in order; raise the first error.

    A server whose exchange failed has its connection closed (its reply is
    unread or half read) and, on a connection error, is marked failing with
    the ring, as ``HashClient`` would have.
    """
    error: Exception | None = None
    sent: list[bool] = []
    for client, command, _ in requests:
        try:
            if client.sock is None:
                client._connect()
            client.sock.sendall(command)
            sent.append(True)
        except Exception as exc:
            error = error or exc
            _failed(ring, client, exc)
            sent.append(False)
    results: list[Any] = []
    for (client, _, read), ok in zip(requests, sent, strict=True):
        if not ok:
            continue
        try:
            results.append(read(client))
        except Exception as exc:
            error = error or exc
            _failed(ring, client, exc)
    if error is not None:
        raise error
    return results


def _failed(ring: Any, client: Any, error: Exception) -> None:
    client.close()  # the next call reconnects rather than read a stale reply
    if isinstance(error, OSError):
        ring._mark_failed_server(client.server)


def _values_reader(prefixed: list[bytes], keys: list[str]) -> Callable[[Any], dict[str, Any]]:
    """How a ``get`` reply is read: as pymemcache's ``Client._fetch_cmd`` reads it."""
    remapped = dict(zip(prefixed, keys, strict=True))

    def read(client: Any) -> dict[str, Any]:
        buf = b""
        found: dict[str, Any] = {}
        while True:
            buf, line = _readline(client.sock, buf)
            client._raise_errors(line, b"get")
            if line == b"END":
                return found
            if not line.startswith(b"VALUE"):
                raise MemcacheUnknownError(line[:32])
            key, value, buf = client._extract_value(False, line, buf, remapped, prefixed)
            found[key] = value

    return read


def _stored_reader(name: bytes, keys: list[str]) -> Callable[[Any], dict[str, bool]]:
    """How the replies to pipelined stores are read: as pymemcache's ``Client._store_cmd``."""

    def read(client: Any) -> dict[str, bool]:
        buf = b""
        stored: dict[str, bool] = {}
        for key in keys:
            buf, line = _readline(client.sock, buf)
            client._raise_errors(line, name)
            if line not in VALID_STORE_RESULTS[name]:
                raise MemcacheUnknownError(line[:32])
            stored[key] = bool(STORE_RESULTS_VALUE[line])
        return stored

    return read
