"""Real memcached, Redis and Varnish processes for the test suite.

Why real servers: round-trip counts, atomic ``incr``, key validity, eviction and
"the cache went away" behaviour are properties of the server, not of LocMem. Each server
runs as a child process on a free loopback port with its own scratch directory, so tests
never touch a system-wide instance (an apt-installed ``redis-server`` on 6379 is ignored).

Usage::

    with MemcachedServer() as server:          # started on a free 127.0.0.1 port
        CACHES = {"default": cache_settings("memcached", server.location)}
        server.stop()                          # connection refused from now on
        server.restart()                       # same port, empty again

``kill()`` (SIGKILL, like a crash) and ``pause()`` / ``resume()`` (SIGSTOP / SIGCONT: the
port still accepts connections but nothing answers, like a hung server) are there for
reliability tests.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

LOOPBACK = "127.0.0.1"

#: Where Debian and source installs put daemons that are not on a normal user's PATH.
EXTRA_BINARY_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")

#: Where Debian's varnish-modules (and source builds) put vmods such as xkey.
VMOD_DIRS = (
    "/usr/lib/x86_64-linux-gnu/varnish/vmods",
    "/usr/lib/aarch64-linux-gnu/varnish/vmods",
    "/usr/lib/varnish/vmods",
    "/usr/local/lib/varnish/vmods",
)

#: The Debian packages that provide each binary; used in error messages.
DEBIAN_PACKAGES = {
    "memcached": "memcached",
    "redis-server": "redis-server",
    "varnishd": "varnish varnish-modules",
    "postgres": "postgresql",
    "initdb": "postgresql",
}

#: Where Debian's postgresql packages put their binaries (not on PATH): one per version.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _wait_until_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until every thread of ``pid`` shows state ``T`` (stopped) in ``/proc``."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
            with contextlib.suppress(OSError):
                # The state follows the command name, which is in parentheses.
                states.append(Path(stat).read_text().rsplit(")", 1)[1].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        if time.monotonic() > deadline:
            raise ServerError(f"process {pid} did not stop: thread states {states}")
        time.sleep(0.001)


class ServerError(RuntimeError):
    """A test server could not be started or stopped."""


class BinaryNotFound(ServerError):
    """The server's executable is not installed; ``scripts/test`` installs it."""

    def __init__(self, name: str) -> None:
        self.name = name
        package = DEBIAN_PACKAGES.get(name, name)
        super().__init__(
            f"{name} is not installed (looked in PATH and {', '.join(EXTRA_BINARY_DIRS)}); "
            f"run scripts/test as root, or: apt-get install {package}"
        )


def find_binary(name: str) -> str | None:
    """Return the path of executable ``name`` from PATH or the usual sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for directory in EXTRA_BINARY_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_postgres_binary(name: str) -> str | None:
    """``postgres`` or ``initdb``: PATH, the sbin directories, then Debian's newest version."""
    found = find_binary(name)
    if found is not None and name != "postgres":
        return found
    for directory in sorted(glob.glob(POSTGRES_BIN_GLOB), key=_version_key, reverse=True):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return found


def _version_key(directory: str) -> tuple[int, ...]:
    version = Path(directory).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def require_binary(name: str) -> str:
    """Like :func:`find_binary`, but raise :class:`BinaryNotFound` when it is missing."""
    found = find_binary(name)
    if found is None:
        raise BinaryNotFound(name)
    return found


def in_ci() -> bool:
    """True on CI (``CI=true`` or ``CI=1``), where a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def need_binary(name: str) -> str:
    """Return the path of server binary ``name`` or end the current test.

    Missing on CI: the test fails (``scripts/test`` should have installed it, so a skip
    would hide a broken setup). Missing on a developer machine: the test is skipped with
    the install command in the reason.
    """
    import pytest

    try:
        return require_binary(name)
    except BinaryNotFound as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def need_vmod(name: str) -> Path:
    """Like :func:`need_binary`, for a Varnish module such as ``"xkey"``."""
    import pytest

    found = find_vmod(name)
    if found is not None:
        return found
    message = (
        f"Varnish module {name} is not installed (looked in {', '.join(VMOD_DIRS)}); "
        "run scripts/test as root, or: apt-get install varnish-modules"
    )
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_vmod(name: str) -> Path | None:
    """Return the shared object of Varnish module ``name`` (e.g. ``"xkey"``), if installed."""
    for directory in VMOD_DIRS:
        candidate = Path(directory) / f"libvmod_{name}.so"
        if candidate.is_file():
            return candidate
    return None


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The kernel picks it (bind to port 0), so it is not a guess; another process could still
    take it before our server binds it, which :meth:`ServerProcess.start` handles by retrying.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.25) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _stop_everything() -> None:
    """Stop servers a crashed or interrupted test session left behind."""
    for server in list(ServerProcess._running):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_everything)


class ServerProcess:
    """A server binary run as a child process on a loopback port.

    Subclasses give :attr:`binary_name` and :meth:`command`. The server's stdout and stderr
    go to a log file (never a pipe, which would block a chatty server once full); the
    log's tail is quoted in every start failure.
    """

    binary_name: ClassVar[str]
    #: The user the server runs as (``None``: ours); PostgreSQL refuses to run as root.
    run_as: ClassVar[str | None] = None
    _running: ClassVar[set[ServerProcess]] = set()

    def __init__(self, *, port: int | None = None, startup_timeout: float = 10.0) -> None:
        self.binary = self.find_binary()
        self.host = LOOPBACK
        self._fixed_port = port is not None
        self.port = port if port is not None else self.free_port()
        self.startup_timeout = startup_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=f"cachesweeper-{self.binary_name}-"))
        self.log_path = self.workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    # -- to be provided by subclasses -------------------------------------------------

    def find_binary(self) -> str:
        """The server's executable; :class:`BinaryNotFound` when it is not installed."""
        return require_binary(self.binary_name)

    def command(self) -> list[str]:
        """The argv that runs the server in the foreground on :attr:`port`."""
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ServerProcess:
        """Start the server and wait until its port accepts connections.

        When the port was chosen for us and turns out to be taken (a race with another
        process), try again on a fresh port; a port given by the caller is never changed.
        """
        if self.running:
            return self
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                break
            except ServerError:
                if attempt == attempts:
                    raise
                self.port = self.free_port()
        return self

    def free_port(self) -> int:
        """A port for this server: :func:`free_port`."""
        return free_port()

    def _start_once(self) -> None:
        if port_accepts(self.host, self.port):
            raise ServerError(
                f"cannot start {self.binary_name}: {self.host}:{self.port} is already in use"
            )
        with self.log_path.open("ab") as log:
            log.write(f"--- starting: {' '.join(self.command())}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                user=self.run_as,
                # Own process group: a Ctrl-C aimed at pytest does not kill the server
                # before the fixtures' teardown stops it cleanly.
                start_new_session=True,
            )
        ServerProcess._running.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._forget()
                raise ServerError(
                    f"{self.binary_name} exited with status {self._process.returncode} "
                    f"before listening on {self.host}:{self.port}.\n{self.log_tail()}"
                )
            if port_accepts(self.host, self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise ServerError(
            f"{self.binary_name} did not accept connections on {self.host}:{self.port} "
            f"within {self.startup_timeout:.0f}s.\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM), waiting for it; SIGKILL if it does not exit."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server, as a crash or an OOM kill would: no clean shutdown."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._forget()

    def restart(self) -> ServerProcess:
        """Stop (if running) and start again on the same port, with empty contents."""
        self.stop()
        self._fixed_port = True  # clients were configured with this port
        self.start()
        return self

    def pause(self) -> None:
        """SIGSTOP the server: connections still open (the kernel accepts), nothing answers."""
        if self._process is None or not self.running:
            raise ServerError(f"{self.binary_name} is not running")
        os.kill(self._process.pid, signal.SIGSTOP)
        # kill() returns once the signal is queued; a thread already running may answer one
        # more request. Wait until every thread is stopped, so "hung" holds from here on.
        _wait_until_stopped(self._process.pid)

    def resume(self) -> None:
        """SIGCONT a server stopped with :meth:`pause`."""
        if self._process is None or not self.running:
            raise ServerError(f"{self.binary_name} is not running")
        os.kill(self._process.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and delete its scratch directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _forget(self) -> None:
        ServerProcess._running.discard(self)

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the server's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server output)"
        text = text[-limit:].strip()
        return f"{self.binary_name} output:\n{text}" if text else "(no server output)"

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


class MemcachedServer(ServerProcess):
    """memcached on TCP only (``-U 0``), ``memory_mb`` of item memory.

    A small ``memory_mb`` (memcached's floor is a few MB: one 1 MB slab page per size class
    in use) makes eviction tests practical.
    """

    binary_name = "memcached"

    def __init__(
        self,
        *,
        memory_mb: int = 64,
        threads: int = 2,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.memory_mb = memory_mb
        self.threads = threads
        self.extra_args = list(extra_args)
        super().__init__(port=port, startup_timeout=startup_timeout)

    @property
    def location(self) -> str:
        """The ``LOCATION`` for Django's PyMemcacheCache."""
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        argv = [
            self.binary,
            "-l", self.host,
            "-p", str(self.port),
            "-U", "0",
            "-m", str(self.memory_mb),
            "-t", str(self.threads),
        ]  # fmt: skip
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without it
        return argv + self.extra_args


class RedisServer(ServerProcess):
    """redis-server without persistence, so a restart really starts empty.

    ``maxmemory`` (e.g. ``"2mb"``) with ``maxmemory_policy`` (e.g. ``"allkeys-lru"``)
    turns it into an evicting cache for eviction tests.
    """

    binary_name = "redis-server"

    def __init__(
        self,
        *,
        maxmemory: str | None = None,
        maxmemory_policy: str | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.extra_args = list(extra_args)
        super().__init__(port=port, startup_timeout=startup_timeout)

    @property
    def location(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The ``LOCATION`` for django-redis and Django's RedisCache (database 0)."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        if self.maxmemory is not None:
            argv += ["--maxmemory", self.maxmemory]
        if self.maxmemory_policy is not None:
            argv += ["--maxmemory-policy", self.maxmemory_policy]
        return argv + self.extra_args


class RedisSentinel(RedisServer):
    """``redis-server --sentinel`` watching one master, ``service``, with a quorum of one.

    Its config file lives in its scratch directory (Sentinel rewrites it as it learns
    replicas and failovers). ``down_after_ms`` and ``failover_timeout_ms`` are Sentinel's
    own settings for ``service``: low ones make a failover test fast. Replicas are found
    through the master's ``INFO``, so start them before the sentinel, or wait for its
    next look (:meth:`wait_for_replicas`).
    """

    def __init__(
        self,
        service: str,
        master_port: int,
        *,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 60000,
        port: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.service = service
        self.master_port = master_port
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.config_path = self.workdir / "sentinel.conf"

    def _start_once(self) -> None:
        name = self.service
        self.config_path.write_text(
            f"port {self.port}\n"
            f"bind {self.host}\n"
            "protected-mode no\n"
            "daemonize no\n"
            f"dir {self.workdir}\n"
            f"sentinel monitor {name} {self.host} {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
        )
        super()._start_once()

    def command(self) -> list[str]:
        return [self.binary, str(self.config_path), "--sentinel"]

    def master(self) -> tuple[str, int] | None:
        """The master's address as this sentinel tells clients."""
        import redis

        with redis.Redis(host=self.host, port=self.port) as client:
            found = client.sentinel_get_master_addr_by_name(self.service)
        return None if found is None else (found[0].decode(), int(found[1]))

    def wait_for_master(self, port: int, timeout: float = 30.0) -> None:
        """Wait until this sentinel names the server on ``port`` as the master (a failover)."""
        deadline = time.monotonic() + timeout
        while self.master() != (self.host, port):
            if time.monotonic() > deadline:
                raise ServerError(f"no failover to port {port}: {self.master()}")
            time.sleep(0.1)

    def wait_for_replicas(self, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until this sentinel knows ``count`` replicas it can hand to clients."""
        import redis

        deadline = time.monotonic() + timeout
        with redis.Redis(host=self.host, port=self.port) as client:
            while True:
                replicas = client.sentinel_slaves(self.service)
                down = ("is_sdown", "is_odown", "is_disconnected")
                usable = [
                    replica
                    for replica in replicas
                    if not any(replica[flag] for flag in down)
                    and replica["master-link-status"] == "ok"
                ]
                if len(usable) >= count:
                    return
                if time.monotonic() > deadline:
                    raise ServerError(f"the sentinel knows no replica: {replicas}")
                time.sleep(0.1)


class VarnishServer(ServerProcess):
    """varnishd in the foreground with a VCL file, in front of a backend on ``backend_port``.

    The VCL is a template: ``${BACKEND_HOST}`` and ``${BACKEND_PORT}`` in it are replaced
    (plain text replacement, nothing else in the VCL is touched), so one VCL file works
    with whatever free port a test's backend got. Inline C is disabled. ``-n`` points at a
    private directory, so the instance never collides with a system varnish.
    """

    binary_name = "varnishd"

    def __init__(
        self,
        vcl: str | os.PathLike[str],
        backend_port: int,
        *,
        backend_host: str = LOOPBACK,
        storage: str = "malloc,32m",
        params: Mapping[str, str] | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.vcl_template = Path(vcl)
        self.backend_host = backend_host
        self.backend_port = backend_port
        self.storage = storage
        self.params: dict[str, Any] = dict(params or {})
        super().__init__(port=port, startup_timeout=startup_timeout)
        # When started as root, varnishd compiles the VCL and runs its cache process as
        # unprivileged users, which must be able to read the VCL and enter the directory.
        self.workdir.chmod(0o755)
        self.vcl_path = self.workdir / "default.vcl"
        self.instance_dir = self.workdir / "instance"

    @property
    def location(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL to send requests (and purges) to."""
        return f"http://{self.host}:{self.port}"

    def render_vcl(self) -> str:
        text = self.vcl_template.read_text()
        return text.replace("${BACKEND_HOST}", self.backend_host).replace(
            "${BACKEND_PORT}", str(self.backend_port)
        )

    def _start_once(self) -> None:
        self.vcl_path.write_text(self.render_vcl())
        self.vcl_path.chmod(0o644)
        super()._start_once()

    def command(self) -> list[str]:
        argv = [
            self.binary,
            "-F",
            "-a", f"{self.host}:{self.port}",
            "-f", str(self.vcl_path),
            "-n", str(self.instance_dir),
            "-s", self.storage,
            "-p", "vcc_allow_inline_c=off",
        ]  # fmt: skip
        for name, value in self.params.items():
            argv += ["-p", f"{name}={value}"]
        return argv


class PostgresServer(ServerProcess):
    """PostgreSQL in a fresh cluster in a temporary directory, trusting loopback connections.

    ``initdb`` makes the cluster; the ``postgres`` server runs in the foreground
    (stopped by PID like the others), as the ``postgres`` user when we are root,
    with fsync off: a test cluster needs no durability against power loss.
    """

    binary_name = "postgres"

    def __init__(self, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        if os.geteuid() == 0:
            self.run_as = "postgres"  # type: ignore[misc]
            shutil.chown(self.workdir, "postgres")
        self.user = self.run_as or _current_user()
        self.data_dir = self.workdir / "data"
        initdb = find_postgres_binary("initdb")
        if initdb is None:
            raise BinaryNotFound("initdb")
        result = subprocess.run(
            [initdb, "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "-E", "UTF8"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self.run_as,
            cwd=self.workdir,
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed: {result.stderr.decode(errors='replace')}")

    def find_binary(self) -> str:
        found = find_postgres_binary("postgres")
        if found is None:
            raise BinaryNotFound("postgres")
        return found

    def command(self) -> list[str]:
        return [
            self.binary,
            "-D", str(self.data_dir),
            "-h", self.host,
            "-p", str(self.port),
            "-k", str(self.workdir),
            "-F",
            "-c", "max_connections=60",
            "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off",
        ]  # fmt: skip

    def _start_once(self) -> None:
        """The port opens before the server takes sessions ("starting up"): wait for one."""
        super()._start_once()
        import psycopg

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                psycopg.connect(
                    host=self.host, port=self.port, user=self.user, dbname="postgres"
                ).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerError(f"postgres took no session.\n{self.log_tail()}") from None
                time.sleep(0.05)

    def database(self, name: str) -> dict[str, Any]:
        """A ``DATABASES`` entry for database ``name`` of this server."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": self.user,
            "HOST": self.host,
            "PORT": str(self.port),
        }

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name`` (dropped first if it exists)."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')


def _current_user() -> str:
    import getpass

    return getpass.getuser()


# -- Django CACHES entries ---------------------------------------------------------------

#: The cache kinds the suite runs against: (stock backend, counting backend).
CACHE_KINDS: dict[str, tuple[str, str]] = {
    "locmem": (
        "django.core.cache.backends.locmem.LocMemCache",
        "tests.counting.CountingLocMemCache",
    ),
    "memcached": (
        "django.core.cache.backends.memcached.PyMemcacheCache",
        "tests.counting.CountingPyMemcacheCache",
    ),
    "django_redis": (
        "django_redis.cache.RedisCache",
        "tests.counting.CountingDjangoRedisCache",
    ),
    "redis": (
        "django.core.cache.backends.redis.RedisCache",
        "tests.counting.CountingRedisCache",
    ),
}


def cache_settings(
    kind: str,
    location: str,
    *,
    counting: bool = True,
    timeout: float = 1.0,
    key_prefix: str = "",
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``CACHES`` entry for ``kind`` (a key of :data:`CACHE_KINDS`) at ``location``.

    ``location`` is a LocMem name, ``host:port`` for memcached, and ``host:port`` or a
    ``redis://`` URL for the Redis kinds. ``timeout`` bounds connecting and each socket
    operation in seconds, so tests against a dead or hung server fail fast. ``options``
    is merged over the defaults given here.
    """
    try:
        stock, counted = CACHE_KINDS[kind]
    except KeyError:
        known = list(CACHE_KINDS)
        raise ValueError(f"unknown cache kind {kind!r}; expected one of {known}") from None
    merged: dict[str, Any]
    if kind == "locmem":
        merged = {}
    elif kind == "memcached":
        merged = {"connect_timeout": timeout, "timeout": timeout}
    else:
        if "://" not in location:
            location = f"redis://{location}/0"
        if kind == "django_redis":
            merged = {"SOCKET_CONNECT_TIMEOUT": timeout, "SOCKET_TIMEOUT": timeout}
        else:  # Django's own RedisCache passes OPTIONS to redis-py's connection pool
            merged = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    merged.update(options or {})
    entry: dict[str, Any] = {
        "BACKEND": counted if counting else stock,
        "LOCATION": location,
        "KEY_PREFIX": key_prefix,
    }
    if merged:
        entry["OPTIONS"] = merged
    return entry


class RedisClusterNode(RedisServer):
    """A cluster node: its bus listens on its port + 10000, so its port stays below 55536."""

    def free_port(self) -> int:
        while True:
            port = free_port()
            if port + 10000 <= 65535:
                return port


class RedisCluster:
    """A Redis Cluster of ``size`` masters, no replicas: the slots split evenly, joined.

    Each node is a :class:`RedisServer` with ``--cluster-enabled yes``; its ``nodes.conf``
    stays in its scratch directory, so :meth:`RedisServer.restart` brings a node back with
    its slots (and, without persistence, no data), as a restarted cache node comes back.
    ``announce`` maps a node's index to the port it tells clients to use (a proxy's, for
    latency benchmarks); the cluster bus keeps the node's own port + 10000.
    No ``redis-cli`` needed: slots and joins are plain ``CLUSTER`` commands.
    """

    SLOTS = 16384

    def __init__(self, size: int = 3, *, node_timeout_ms: int = 15000) -> None:
        self.nodes = [
            RedisClusterNode(
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                ]
            )
            for _ in range(size)
        ]

    @property
    def url(self) -> str:
        """A ``LOCATION`` for django-valkey's ``ClusterValkeyCache``: the first node."""
        return f"valkey://{self.nodes[0].host}:{self.nodes[0].port}"

    def start(self, announce: Mapping[int, int] | None = None) -> RedisCluster:
        """Start the nodes, then :meth:`form` the cluster."""
        for node in self.nodes:
            node.start()
        return self.form(announce)

    def form(self, announce: Mapping[int, int] | None = None) -> RedisCluster:
        """Assign the slots of the started nodes and join them (``announce``: see above)."""
        import redis

        clients = [redis.Redis(host=LOOPBACK, port=node.port) for node in self.nodes]
        try:
            for index, port in (announce or {}).items():
                clients[index].config_set("cluster-announce-port", port)
                clients[index].config_set(
                    "cluster-announce-bus-port", self.nodes[index].port + 10000
                )
            share = self.SLOTS // len(self.nodes)
            for index, client in enumerate(clients):
                last = self.SLOTS - 1 if index == len(self.nodes) - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", LOOPBACK, node.port)
            self.wait_until_ok(clients)
        finally:
            for client in clients:
                client.close()
        return self

    def wait_until_ok(self, clients: Sequence[Any] | None = None, timeout: float = 20) -> None:
        """Wait until every node says the cluster is ``ok`` (all slots served, all joined)."""
        import redis

        own = clients is None
        if clients is None:
            clients = [redis.Redis(host=LOOPBACK, port=node.port) for node in self.nodes]
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    states = [c.cluster("info")["cluster_state"] for c in clients]
                    known = [len(c.cluster("nodes")) for c in clients]
                except redis.ConnectionError:
                    states, known = ["down"], [0]
                if set(states) == {"ok"} and min(known) == len(self.nodes):
                    return
                if time.monotonic() > deadline:
                    raise ServerError(f"the cluster did not form: {states}")
                time.sleep(0.05)
        finally:
            if own:
                for client in clients:
                    client.close()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
