"""A TCP proxy that can cut the network between Django and a cache server.

``cut()`` drops every open connection and refuses new ones, as a network
partition or a firewall would, while the server behind keeps its contents;
``restore()`` listens again on the same port. Unlike SIGSTOP, nothing sent
during the cut reaches the server later.

``delay`` holds every reply back that many seconds from when the server sent
it, as a longer network would (each chunk on its own clock, so replies do not
queue behind each other, and replies that overlap in time wait once together);
it is read as each chunk arrives, so it may change while connections are open,
and ``None`` (the default) passes replies straight through. ``requests`` logs
when each chunk from the client arrived and ``replies`` when each chunk of
reply left, so a test can see whether a client asked several servers at once.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time

from tests.servers import LOOPBACK, free_port


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int, *, delay: float | None = None) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.requests: list[float] = []  # time.monotonic() of each chunk from a client
        self.replies: list[float] = []  # time.monotonic() of each chunk of reply sent on
        self.host = LOOPBACK
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def location(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def is_cut(self) -> bool:
        with self._lock:
            return self._listener is None

    def restore(self) -> None:
        """Accept connections again (same port)."""
        deadline = time.monotonic() + 5
        while True:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.host, self.port))
                break
            except OSError:  # a connection of the last round is still closing
                listener.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # Linger 0: the peer gets a reset, not a polite end of stream.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    return
                self._sockets.add(client)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets.add(upstream)
            for sock in (client, upstream):  # no Nagle wait for an ACK the delay holds back
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=self._pump, args=(client, upstream, self.requests), daemon=True
            ).start()
            if self.delay is not None:
                held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
                threading.Thread(target=self._hold, args=(upstream, held), daemon=True).start()
                threading.Thread(target=self._release, args=(held, client), daemon=True).start()
            else:
                threading.Thread(
                    target=self._pump, args=(upstream, client, self.replies), daemon=True
                ).start()

    def _pump(self, source: socket.socket, destination: socket.socket, log: list[float]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                log.append(time.monotonic())
                destination.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, destination)

    def _hold(self, source: socket.socket, held: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        """Read replies as they come, each to be sent on ``delay`` seconds later."""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                held.put((time.monotonic() + (self.delay or 0.0), data))
        except OSError:
            pass
        finally:
            held.put((0.0, b""))
            self._drop(source)

    def _release(
        self, held: queue.SimpleQueue[tuple[float, bytes]], destination: socket.socket
    ) -> None:
        try:
            while True:
                due, data = held.get()
                if not data:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                self.replies.append(time.monotonic())
                destination.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(destination)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
