"""Fault-injection tests: worker processes killed or interrupted, the Redis server killed.

Workers run `tests.apps.recorder:app` in subprocesses (`python -m rmq worker run ...`); each one
appends `start <msg_id>` / `done <msg_id>` lines to its own file, which the tests read back.
`WorkerPool` starts them and kills whatever is still running when the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, TypeVar

import anyio
import redis

import rmq
from rmq.keys import NamespaceKeys
from tests.helpers import wait_until

__all__ = [
    "REPO_ROOT",
    "Records",
    "Worker",
    "WorkerPool",
    "group_lag",
    "group_pending",
    "pending_entries",
    "queue_streams",
    "wait_for",
    "worker_env",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_TARGET = "tests.apps.recorder:app"


@dataclass(slots=True)
class Records:
    """What one worker's handler wrote: how often each msg_id started and finished."""

    starts: Counter[str] = field(default_factory=Counter)
    dones: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> Records:
        records = cls()
        try:
            text = path.read_text()
        except FileNotFoundError:
            return records
        for line in text.splitlines():
            event, _, msg_id = line.partition(" ")
            if event == "start" and msg_id:
                records.starts[msg_id] += 1
            elif event == "done" and msg_id:
                records.dones[msg_id] += 1
        return records

    @property
    def done_ids(self) -> set[str]:
        return set(self.dones)

    @property
    def unfinished(self) -> set[str]:
        """Ids that started more often than they finished (a handler was interrupted)."""
        return {m for m, n in self.starts.items() if n > self.dones.get(m, 0)}


def worker_env(settings: rmq.Settings, **extra: object) -> dict[str, str]:
    """The RMQ_* variables of `settings` (the fields that differ from the defaults) plus `extra`.

    Inherited RMQ_* and RECORDER_* variables are dropped: the caller's environment cannot leak in.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "RECORDER_"))}
    defaults = rmq.Settings()
    for name in settings.__dataclass_fields__:
        if name.startswith("_"):
            continue
        value = getattr(settings, name)
        if value != getattr(defaults, name) and value is not None:
            env[rmq.Settings.env_var(name)] = str(value)
    env["RMQ_LOG_LEVEL"] = "INFO"
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in extra.items():
        env[key] = str(value)
    return env


class Worker:
    """One `rmq worker run <app_target>` subprocess (subclasses name their own app)."""

    app_target: ClassVar[str] = APP_TARGET

    def __init__(self, name: str, out: Path, log: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.out = out
        self.log = log
        with log.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rmq", "worker", "run", self.app_target],
                cwd=REPO_ROOT,
                env={**env, "RECORDER_OUT": str(out)},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def records(self) -> Records:
        return Records.read(self.out)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        """The log tail, for assertion messages."""
        tail = "\n".join(self.log_text().splitlines()[-40:])
        status = f"pid {self.pid}, returncode {self.returncode}"
        return f"worker {self.name} ({status}) log tail:\n{tail}"

    def send_signal(self, signum: int) -> None:
        if self.running:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.running:
            self.process.kill()
        self.process.wait()

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the worker logs that it is consuming (its groups are declared)."""

        def ready() -> bool:
            if not self.running:
                raise AssertionError(f"worker exited during startup\n{self.describe()}")
            return " consuming " in self.log_text()

        await wait_until(ready, timeout, what=f"worker {self.name} to start")

    async def wait_exit(self, timeout: float) -> int:
        """Wait until the process exits; return its exit code."""
        try:
            await wait_until(lambda: not self.running, timeout, what=f"worker {self.name} to exit")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None
        code = self.process.wait()
        return code


W = TypeVar("W", bound=Worker)


class WorkerPool:
    """Starts recorder workers in `directory`; kills every one still running on exit."""

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.env = dict(env)
        self.workers: list[Worker] = []

    def start(self, name: str, **extra: object) -> Worker:
        return self.spawn(Worker, name, self.directory / f"{name}.records", **extra)

    def spawn(self, kind: type[W], name: str, out: Path, **extra: object) -> W:
        """Start a `kind` worker recording to `out`, logging to `<name>.log`; `extra` env vars."""
        env = {**self.env, **{k: str(v) for k, v in extra.items()}}
        worker = kind(name, out, self.directory / f"{name}.log", env)
        self.workers.append(worker)
        return worker

    def done_union(self) -> set[str]:
        out: set[str] = set()
        for worker in self.workers:
            out |= worker.records().done_ids
        return out

    def describe(self) -> str:
        return "\n\n".join(w.describe() for w in self.workers)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for worker in self.workers:
            if worker.running:
                worker.process.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        for worker in self.workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


async def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Like `wait_until`, polling every `interval` seconds (for conditions that read files)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(interval)


def queue_streams(namespace: str, topic: str, queues: int) -> list[str]:
    keys = NamespaceKeys(namespace)
    return [keys.queue(topic, q).stream for q in range(queues)]


def group_pending(client: redis.Redis, streams: Iterable[str], group: str) -> int:
    """The group's pending-entry count summed over `streams` (XPENDING summary)."""
    total = 0
    for stream in streams:
        summary = client.xpending(stream, group)
        total += int(summary["pending"])
    return total


def pending_entries(
    client: redis.Redis, streams: Iterable[str], group: str
) -> set[tuple[str, str]]:
    """Every (stream, entry id) pending in the group (XPENDING with a range, paged)."""
    out: set[tuple[str, str]] = set()
    for stream in streams:
        start = "-"
        while True:
            rows = client.xpending_range(stream, group, min=start, max="+", count=1000)
            if not rows:
                break
            ids = [_text(row["message_id"]) for row in rows]
            out.update((stream, entry_id) for entry_id in ids)
            start = "(" + ids[-1]
    return out


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def group_lag(client: redis.Redis, streams: Iterable[str], group: str) -> int | None:
    """The group's lag summed over `streams` (XINFO GROUPS); None if Redis cannot compute it."""
    total = 0
    for stream in streams:
        for info in client.xinfo_groups(stream):
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) != group:
                continue
            lag = info.get("lag")
            if lag is None:
                return None
            total += int(lag)
    return total
