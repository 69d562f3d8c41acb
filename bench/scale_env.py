"""What every case of bench/scale.py builds on: the run's `Env` (server, options, settings),
bounded in-process runs of an app, handled-message counters, fills and rmq's captured warnings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
from redis.asyncio import Redis

import rmq

Row = dict[str, Any]
PAD = "x" * 60
QUEUES = 4  # rmq's default queues per topic: every case uses library defaults
CHUNK = 500  # messages per send_batch / per flush of one-way sends


def body(i: int) -> dict[str, Any]:
    return {"i": i, "t": time.time(), "pad": PAD}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------- the run's environment


@dataclass
class Env:
    """The server, the options and the settings every case builds on."""

    url: str
    args: argparse.Namespace
    overrides: dict[str, Any]
    """Settings changes from `--set` (applied to every rmq App and worker process)."""
    env_overrides: dict[str, str]
    tmp: Path
    seq: int = 0
    log: LogCapture = field(default_factory=lambda: LogCapture())

    def settings(self, **changes: Any) -> rmq.Settings:
        """Library defaults (not the RMQ_* environment), a fresh namespace, a short shutdown
        grace (stopping is not measured), `--set` overrides, then `changes`."""
        self.seq += 1
        values: dict[str, Any] = {"shutdown_grace": 2.0, **self.overrides, **changes}
        return rmq.Settings(redis_url=self.url, namespace=f"s{self.seq}", **values)

    def worker_env(self, settings: rmq.Settings, **extra: str) -> dict[str, str]:
        """RMQ_* variables for a worker process: the same settings as `settings`."""
        return {
            **self.env_overrides, "RMQ_REDIS_URL": self.url,
            "RMQ_NAMESPACE": settings.namespace,
            "RMQ_SHUTDOWN_GRACE": str(settings.shutdown_grace), **extra,
        }  # fmt: skip

    def drain_timeout(self, n: int) -> float:
        """How long `n` messages may take to be handled before a case reports instead."""
        return float(self.args.drain_base + n / self.args.drain_floor_rate)

    def redis(self, name: str = "scale-probe") -> Redis:
        return Redis.from_url(self.url, protocol=2, client_name=name)

    async def flushall(self) -> None:
        async with self.redis() as r:
            await r.flushall()


class LogCapture(logging.Handler):
    """Collects rmq's warnings and errors during a case (instead of printing them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = str(record.msg)
        self.counts[key] = self.counts.get(key, 0) + 1
        if key not in self.examples:
            self.examples[key] = record.getMessage()[:300]

    def take(self) -> list[dict[str, Any]]:
        out = [
            {"count": n, "example": self.examples[k]}
            for k, n in sorted(self.counts.items(), key=lambda kv: -kv[1])
        ]
        self.counts, self.examples = {}, {}
        return out[:5]


# ---------------------------------------------------------------------- helpers


class Handled:
    """Counts handled messages (each `key` once; repeats are counted in `duplicates`);
    `done` is set at `target`; keeps each first handling time."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.times: list[float] = []
        self.seen: set[int] = set()
        self.duplicates = 0
        self.done = anyio.Event()

    def hit(self, key: int | None = None) -> None:
        if key is not None:
            if key in self.seen:
                self.duplicates += 1
                return
            self.seen.add(key)
        self.times.append(time.perf_counter())
        if len(self.times) >= self.target:
            self.done.set()

    @property
    def count(self) -> int:
        return len(self.times)

    def rate(self) -> float | None:
        t = self.times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else None

    async def wait(self, within: float) -> bool:
        """Wait until `target` messages were handled, at most `within` seconds; True if so."""
        with anyio.move_on_after(within):
            await self.done.wait()
        return self.done.is_set()


class _Started:
    """A task_status for `app.run` that only records that it was called."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def started(self, value: object = None) -> None:
        self.event.set()


@dataclass
class Run:
    """An app running in this process: when it started, or why it did not."""

    within: float
    seconds: float | None = None
    """Seconds from `app.run()` until it reported `started`; None if it did not."""
    error: str | None = None
    """What `app.run()` raised, if it returned with an error."""

    @property
    def why(self) -> str:
        if self.error is not None:
            return f"app.run() failed: {self.error}"
        return f"did not start within {self.within:g} s"


def describe(exc: BaseException) -> str:
    """One line for an exception (a task group's single error is shown as itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


@asynccontextmanager
async def running(app: rmq.App, within: float) -> AsyncIterator[Run]:
    """Run `app` in this process for the block; `Run.seconds` is None if it did not report
    `started` within `within` seconds (it is then cancelled) or failed; the block's end stops
    it (bounded)."""
    started = _Started()
    run = Run(within)
    t0 = time.perf_counter()

    async def serve() -> None:
        try:
            await app.run(handle_signals=False, task_status=started)
        except Exception as exc:
            run.error = describe(exc)
        finally:
            started.event.set()  # wake the waiter

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        with anyio.move_on_after(within):
            await started.event.wait()
        if started.event.is_set() and run.error is None:
            run.seconds = time.perf_counter() - t0
        try:
            yield run
        finally:
            app.stop()
            grace = app.settings.shutdown_grace + 10.0
            stopping = grace if run.seconds is not None else 0.0  # not started: cancel at once
            tg.cancel_scope.deadline = anyio.current_time() + stopping


async def create_topics(settings: rmq.Settings, topics: list[str]) -> None:
    """Create `topics` with the public admin API (a deployment has its topics already)."""
    async with rmq.App(settings) as setup:
        for part in range(0, len(topics), 100):
            await asyncio.gather(*[setup.admin.create_topic(t) for t in topics[part : part + 100]])


async def fill(app: rmq.App, topic: str, n: int, make: Callable[[int], Any] = body) -> None:
    for start in range(0, n, CHUNK):
        await app.send_batch(topic, [make(i) for i in range(start, min(n, start + CHUNK))])


async def raw_fill(r: Redis, stream: str, n: int) -> None:
    for start in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + 1000)):
            pipe.xadd(stream, {"d": orjson.dumps(body(i))})
        await pipe.execute()


@contextmanager
def capture(env: Env, row: Row) -> Iterator[None]:
    """Put rmq's warnings logged during the block into `row["log"]`."""
    env.log.take()
    try:
        yield
    finally:
        logged = env.log.take()
        if logged:
            row["log"] = logged
