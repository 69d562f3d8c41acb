"""What bench/scale.py observes from outside rmq: Redis counters, process CPU, worker processes.

The one place that knows rmq internals the scale cases need:

- how rmq names its Redis connections (`CLIENT SETNAME rmq:<app name>`, `rmq:<app name>:ops` for
  the worker runner's own connection; an app name is `<host>-<pid>-<random>`), to count the
  connections one app or one worker process holds;
- the stream key of each queue (`NamespaceKeys`), to deliver entries to a consumer that never
  acknowledges them (a crashed consumer).

Everything else goes through rmq's public API, or through Redis and /proc:

- `ServerStats`: INFO cpu, stats and commandstats snapshots and their deltas (Redis CPU seconds,
  commands, usec per command);
- `proc_cpu(pid)`: utime + stime of a process from /proc/<pid>/stat, in seconds;
- `WorkerProcess`: `python -m rmq worker run scale_worker:app --health-port P` as a separate
  process (its own session, so it is stopped by its id), ready once GET /readyz answers 200;
  `RecordFile` reads the handling times it appends to a file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from rmq.embedded import free_port
from rmq.keys import NamespaceKeys

BENCH = Path(__file__).resolve().parent
_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- rmq internals


def app_client_prefix(app_name: str) -> str:
    """CLIENT LIST names of every connection of the app called `app_name` (rmq.connection)."""
    return f"rmq:{app_name}"


def process_client_prefix(pid: int) -> str:
    """CLIENT LIST names of every connection of any app in process `pid` (rmq.ids)."""
    return f"rmq:{socket.gethostname()}-{pid}-"


def queue_streams(namespace: str, topic: str, queues: int) -> list[str]:
    """The stream key of every queue of `topic` (rmq.keys)."""
    keys = NamespaceKeys(namespace)
    return [keys.queue(topic, q).stream for q in range(queues)]


async def connections(r: Redis, prefix: str) -> int:
    """How many connections to the server carry a client name starting with `prefix`."""
    clients: list[dict[str, Any]] = await r.client_list()
    return sum(1 for c in clients if str(c.get("name", "")).startswith(prefix))


# ---------------------------------------------------------------------- Redis counters


@dataclass
class ServerStats:
    """One snapshot of INFO cpu / stats / commandstats."""

    at: float
    cpu: float
    commands: int
    per_command: dict[str, tuple[int, float]] = field(default_factory=dict)  # calls, usec

    @classmethod
    async def take(cls, r: Redis) -> ServerStats:
        info: dict[str, Any] = await r.info("everything")
        per: dict[str, tuple[int, float]] = {}
        for key, value in info.items():
            if key.startswith("cmdstat_") and isinstance(value, dict):
                per[key[len("cmdstat_") :]] = (int(value["calls"]), float(value["usec"]))
        cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return cls(time.monotonic(), cpu, int(info["total_commands_processed"]), per)

    def since(self, before: ServerStats, own_commands: int = 0) -> dict[str, Any]:
        """CPU %, commands/s and the busiest commands between `before` and this snapshot
        (`own_commands`: the INFO calls of the measurement itself, subtracted)."""
        seconds = max(1e-9, self.at - before.at)
        cpu = self.cpu - before.cpu
        commands = self.commands - before.commands - own_commands
        deltas = []
        for name, (calls, usec) in self.per_command.items():
            old_calls, old_usec = before.per_command.get(name, (0, 0.0))
            if name == "info":
                calls -= own_commands
            if calls > old_calls:
                deltas.append((name, calls - old_calls, usec - old_usec))
        deltas.sort(key=lambda d: -d[2])
        return {
            "seconds": seconds, "cpu_seconds": cpu, "cpu_percent": 100 * cpu / seconds,
            "commands": commands, "commands_per_s": commands / seconds,
            "top": [{"command": n, "calls": c, "usec": u} for n, c, u in deltas[:6]],
        }  # fmt: skip


def top_commands(delta: dict[str, Any], per: float | None = None, unit: str = "/s") -> str:
    """`evalsha 3,200/s (60% of usec), xautoclaim ...` for a report's notes column."""
    rows = delta.get("top", [])
    total = sum(row["usec"] for row in rows) or 1.0
    scale = per if per is not None else delta["seconds"]
    parts = []
    for row in rows[:3]:
        rate = row["calls"] / scale
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2f}"
        parts.append(f"{row['command']} {shown}{unit} ({100 * row['usec'] / total:.0f}%)")
    return ", ".join(parts)


# ---------------------------------------------------------------------- processes


def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) process `pid` has used so far; None once it
    is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class WorkerProcess:
    """`rmq worker run scale_worker:app` in a process of its own, configured by `env`."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.started_at = 0.0
        paths = [str(BENCH), os.environ.get("PYTHONPATH", "")]
        own = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
        self.env = {**own, **env, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "rmq", "worker", "run", "scale_worker:app",
            "--health-port", str(self.port), "--log-level", "WARNING",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        self.started_at = time.monotonic()

    async def wait_ready(self, within: float) -> float | None:
        """Seconds from start until /readyz answered 200, or None (not `within` that many
        seconds of the start, or the process exited)."""
        deadline = self.started_at + within
        url = f"http://127.0.0.1:{self.port}/readyz"
        while time.monotonic() < deadline:
            if not self.alive():
                return None
            if await asyncio.to_thread(_get_ok, url):
                return time.monotonic() - self.started_at
            await asyncio.sleep(0.05)
        return None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(line.strip()[:200] for line in text[-lines:])

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM (a graceful drain), then SIGKILL of its process group; the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode


class RecordFile:
    """Reads the handling times a worker appends to `path` (bench/scale_worker.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new(self) -> array[float]:
        times = array("d")
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return times
        end = len(data) - len(data) % times.itemsize  # a record being written: next time
        self.offset += end
        times.frombytes(data[:end])
        return times


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False
