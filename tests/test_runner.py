"""The worker runner as real processes: `rmq worker run tests.apps.runner_app:app`.

- two processes: a SIGKILLed child is restarted and nothing is lost;
- /metrics aggregates both children (multiprocess mode) plus, with --export-state, the Redis
  state once (without it, none: see test_metrics_http.py);
- /healthz, /readyz and `rmq worker check` follow the workers' life;
- SIGTERM drains and exits 0; a second SIGINT forces the stop, unfinished work stays pending.

The counters come from the test app's handler calling the `rmq.metrics` API itself: the push
consumer's own hot-path hooks are wired separately (and their API is tested in test_metrics.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import rmq
from rmq.embedded import free_port
from rmq.health import heartbeat_key
from rmq.keys import NamespaceKeys
from tests.helpers import make_settings

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
TARGET = "tests.apps.runner_app:app"
TOPIC, GROUP, QUEUES = "jobs", "runners", 4


def runner_env(redis_url: str, namespace: str, **extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "RUNNER_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        RMQ_REDIS_URL=redis_url, RMQ_NAMESPACE=namespace, RMQ_VISIBILITY_TIMEOUT="1.5",
        RMQ_CLAIM_INTERVAL="0.3", RMQ_BLOCK_SECONDS="0.3", RMQ_SHUTDOWN_GRACE="5",
        RMQ_HEARTBEAT_INTERVAL="0.2", RMQ_RESTART_DELAY="0.1", RMQ_BACKOFF_BASE="0.02",
        RMQ_BACKOFF_CAP="0.5", RMQ_STARTUP_TIMEOUT="5", RMQ_DEFAULT_QUEUES=str(QUEUES),
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Runner:
    """One `rmq worker run` process (a supervisor with --processes > 1)."""

    def __init__(self, directory: Path, env: dict[str, str], *args: str) -> None:
        self.log = directory / "runner.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        command = [
            sys.executable, "-m", "rmq", "worker", "run", TARGET, *args,
            "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def describe(self) -> str:
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
        return f"runner pid {self.process.pid}, returncode {self.process.poll()}:\n{tail}"

    def get(self, path: str) -> tuple[int, str]:
        port = self.metrics_port if path == "/metrics" else self.health_port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 30) -> None:
        wait(lambda: self.get("/readyz")[0] == 200, timeout, "/readyz", self)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit after {signum}\n{self.describe()}") from None

    def kill(self) -> None:
        """SIGKILL the runner and its worker processes (test cleanup)."""
        children = _children(self.process.pid)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _children(parent: int) -> list[int]:
    """Pids whose parent is `parent` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(stat.parent.name))
    return out


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    started: list[Runner] = []

    def make(env: dict[str, str], *args: str) -> Runner:
        runner = Runner(tmp_path, env, *args)
        started.append(runner)
        return runner

    yield make
    for runner in started:
        runner.kill()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def wait(condition: Callable[[], bool], timeout: float, what: str, runner: Runner) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if runner.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}\n{runner.describe()}")
        time.sleep(0.05)


def records(path: Path) -> tuple[Counter[str], Counter[str], set[int]]:
    """(starts, dones, pids that handled something) from the app's record file."""
    starts: Counter[str] = Counter()
    dones: Counter[str] = Counter()
    pids: set[int] = set()
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        event, pid, msg_id = line.split()
        (starts if event == "start" else dones)[msg_id] += 1
        pids.add(int(pid))
    return starts, dones, pids


def send(redis_url: str, namespace: str, count: int) -> list[rmq.SendResult]:
    async def main() -> list[rmq.SendResult]:
        async with rmq.App(make_settings(redis_url, namespace, default_queues=QUEUES)) as app:
            return await app.send_batch(TOPIC, list(range(count))) + await app.send_batch(
                TOPIC, list(range(count)), selector=lambda n, _m: 1
            )

    return anyio.run(main)


def child_pids(client: redis.Redis, namespace: str) -> set[int]:
    members: Any = client.zrange(heartbeat_key(namespace, TARGET), 0, -1)
    return {int(m.rpartition(":")[2]) for m in members}


def streams(namespace: str) -> list[str]:
    return [NamespaceKeys(namespace).queue(TOPIC, q).stream for q in range(QUEUES)]


def pending_total(client: redis.Redis, namespace: str) -> int:
    return sum(int(client.xpending(s, GROUP)["pending"]) for s in streams(namespace))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def worker_check(env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, "-m", "rmq", "worker", "check", TARGET], cwd=ROOT, env=env,
        capture_output=True, timeout=30, check=False,
    ).returncode  # fmt: skip


def test_sigkill_a_child_it_is_restarted_and_nothing_is_lost(
    start: Callable[..., Runner], client: redis.Redis, redis_url: str, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "records"
    env = runner_env(redis_url, namespace, RUNNER_OUT=out, RUNNER_SLEEP="0.01")
    runner = start(env, "--processes", "2", "--concurrency", "5")
    runner.wait_ready()
    first = child_pids(client, namespace)
    assert len(first) == 2
    sent = {r.msg_id for r in send(redis_url, namespace, 400)}
    wait(lambda: len(records(out)[1]) >= 100, 30, "some progress", runner)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait(lambda: len(child_pids(client, namespace) - first) == 1, 30, "a restarted child", runner)
    wait(lambda: runner.get("/readyz")[0] == 200, 30, "ready again", runner)
    wait(lambda: set(records(out)[1]) >= sent, 45, "every message handled", runner)
    wait(lambda: pending_total(client, namespace) == 0, 15, "nothing pending", runner)
    assert runner.stop() == 0, runner.describe()
    log = runner.log.read_text()
    assert f"(pid {victim}) exited with -9; restarting in" in log
    assert "all worker processes exited (clean drain)" in log
    _, dones, pids = records(out)
    assert set(dones) == sent
    assert victim in pids  # it was working when it was killed; the survivors finished its share


def test_sigterm_while_a_child_starts_is_a_clean_stop(
    start: Callable[..., Runner], redis_url: str, namespace: str
) -> None:
    """A child that gets the forwarded SIGTERM before it installed its handler had nothing in
    flight: the drain is clean (exit 0), not a failure."""
    env = runner_env(redis_url, namespace, RUNNER_IMPORT_SLEEP="30")
    runner = start(env, "--processes", "2")
    wait(lambda: "worker process 1 started" in runner.log.read_text(), 30, "children", runner)
    assert runner.stop() == 0, runner.describe()
    log = runner.log.read_text()
    assert log.count("stopped while starting") == 2
    assert "all worker processes exited (clean drain)" in log


def test_metrics_health_check_and_clean_drain(
    start: Callable[..., Runner], client: redis.Redis, redis_url: str, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "records"
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    (prom_dir / "counter_12345.db").write_bytes(b"stale")
    env = runner_env(
        redis_url, namespace, RUNNER_OUT=out, RUNNER_SLEEP="0.05",
        PROMETHEUS_MULTIPROC_DIR=prom_dir,
    )  # fmt: skip
    runner = start(env, "--processes", "2", "--concurrency", "10", "--export-state")
    runner.wait_ready()
    assert runner.get("/healthz") == (200, "ok\n")
    assert not (prom_dir / "counter_12345.db").exists()  # wiped at start
    assert worker_check(env) == 0
    sent = send(redis_url, namespace, 100)
    wait(lambda: len(records(out)[1]) >= len(sent), 30, "every message handled", runner)
    wait(lambda: pending_total(client, namespace) == 0, 15, "nothing pending", runner)

    # a dead-letter entry and a lagging second group, for the Redis-state gauges
    dlq = NamespaceKeys(namespace).queue(TOPIC, 0).dlq(GROUP)
    client.xadd(dlq, {"reason": "test"})
    for stream in streams(namespace):
        client.xgroup_create(stream, "audit", "0")
    status, text = runner.get("/metrics")
    assert status == 200, text
    got = samples(text)
    labels = (("group", GROUP), ("topic", TOPIC))
    acked = (("group", GROUP), ("result", "ack"), ("topic", TOPIC))
    handled = sum(records(out)[1].values())
    assert got[("rmq_messages_consumed_total", acked)] == handled
    assert got[("rmq_consume_duration_seconds_count", labels)] == handled
    assert got[("rmq_messages_in_flight", labels)] == 0
    assert got[("rmq_stream_length", (("topic", TOPIC),))] == len(sent)
    assert got[("rmq_consumer_lag", labels)] == 0
    assert got[("rmq_consumer_pending", labels)] == 0
    assert got[("rmq_consumer_lag", (("group", "audit"), ("topic", TOPIC)))] == len(sent)
    assert got[("rmq_dlq_length", labels)] == 1
    assert got[("rmq_consumers", labels)] == 2
    assert got[("rmq_redis_up", ())] == 1
    assert any(name == "rmq_build_info" for name, _ in got)
    assert text.count("\nrmq_stream_length{") == 1  # the Redis state once, not per process
    assert runner.get("/healthz")[0] == 200

    # SIGTERM while messages are in flight: handlers finish, unstarted ones are handed back
    more = send(redis_url, namespace, 200)
    wait(lambda: len(records(out)[0]) > len(sent), 10, "new messages started", runner)
    assert runner.stop(signal.SIGTERM) == 0, runner.describe()
    assert "all worker processes exited (clean drain)" in runner.log.read_text()
    starts, dones, _ = records(out)
    assert starts == dones  # no handler was interrupted
    done_ids = set(dones)
    waiting = _undelivered_or_pending(client, namespace)
    assert {r.msg_id for r in [*sent, *more]} <= done_ids | waiting  # nothing lost
    assert worker_check(env) == 1  # heartbeats removed at exit


def _undelivered_or_pending(client: redis.Redis, namespace: str) -> set[str]:
    """msg_ids the group has not finished: pending, or after its last-delivered id."""
    out: set[str] = set()
    for stream in streams(namespace):
        info = {g["name"]: g for g in client.xinfo_groups(stream)}[GROUP]
        ids = {row["message_id"] for row in client.xpending_range(stream, GROUP, "-", "+", 10_000)}
        entries: Any = client.xrange(stream)
        for entry_id, fields in entries:
            after = _key(entry_id) > _key(info["last-delivered-id"])
            if after or entry_id in ids:
                out.add(fields["i"])
    return out


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def test_second_sigint_forces_the_stop(
    start: Callable[..., Runner], client: redis.Redis, redis_url: str, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "records"
    env = runner_env(
        redis_url, namespace, RUNNER_OUT=out, RUNNER_SLEEP="60", RMQ_SHUTDOWN_GRACE="60"
    )
    runner = start(env, "--processes", "2")
    runner.wait_ready()
    send(redis_url, namespace, 3)
    wait(lambda: len(records(out)[0]) >= 2, 15, "handlers to start", runner)
    runner.process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert runner.process.poll() is None  # draining: handlers sleep for 60 s
    began = time.monotonic()
    runner.stop(signal.SIGINT, timeout=20)
    assert time.monotonic() - began < 15
    starts, dones, _ = records(out)
    assert not dones
    assert pending_total(client, namespace) >= len(starts)  # unfinished work stays pending


def test_single_process_serves_metrics_and_health(
    start: Callable[..., Runner], client: redis.Redis, redis_url: str, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    env = runner_env(redis_url, namespace, RMQ_LOG_FORMAT="json")
    runner = start(env, "--export-state")
    runner.wait_ready()
    assert worker_check(env) == 0
    sent = send(redis_url, namespace, 20)
    wait(lambda: pending_total(client, namespace) == 0, 15, "nothing pending", runner)

    def all_consumed() -> bool:
        got = samples(runner.get("/metrics")[1])
        acked = (("group", GROUP), ("result", "ack"), ("topic", TOPIC))
        return got.get(("rmq_messages_consumed_total", acked)) == len(sent)

    wait(all_consumed, 15, "the counters", runner)
    got = samples(runner.get("/metrics")[1])
    assert got[("rmq_stream_length", (("topic", TOPIC),))] == len(sent)
    assert runner.stop() == 0
    lines = [line for line in runner.log.read_text().splitlines() if line.startswith("{")]
    assert any('"logger":"rmq.app"' in line and "consuming" in line for line in lines)
    assert worker_check(env) == 1


async def test_http_server_routes_and_errors() -> None:
    """The small server behind /metrics and the health checks: 200, 404, 405, 400, HEAD, 500."""
    from rmq.httpserver import Response, serve, text

    async def ok() -> Response:
        return text(200, "fine\n")

    async def broken() -> Response:
        raise RuntimeError("bug")

    async def request(port: int, raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, "127.0.0.1", 0, {"/ok": ok, "/broken": broken})
        assert (await request(port, b"GET /ok?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(b"fine\n")
        head = await request(port, b"HEAD /ok HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
        assert (await request(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await request(port, b"POST /ok HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await request(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await request(port, b"GET /broken HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 500")
        tg.cancel_scope.cancel()
