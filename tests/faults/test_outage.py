"""Redis unreachable: at start (a clear error and exit code, in bounded time) and for a while in
the middle of a run (producers fail clearly, workers resume by themselves, nothing is lost)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer, free_port
from tests.faults import Handled, Report, fault_settings
from tests.helpers import running, wait_until
from tests.proxy import FaultProxy

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
TOPIC, GROUP = "steady", "g"
OUTAGE = 5.0


@pytest.mark.parametrize("kind", ["refused", "half-open"])
async def test_unreachable_at_start(kind: str, proxy: FaultProxy, namespace: str) -> None:
    """Nothing listens (connections refused), or a half-open server (accepts, never answers):
    `async with app` raises BrokerUnavailable once startup_timeout has passed, not later."""
    if kind == "refused":
        proxy.refuse()
    else:
        proxy.blackhole()
    settings = fault_settings(proxy.url, namespace, startup_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(rmq.BrokerUnavailable, match="unavailable") as info:
        async with rmq.App(settings):
            pass
    took = time.monotonic() - started
    assert 2.0 - settings.backoff_cap - 0.2 <= took < 2.0 + settings.connect_timeout + 0.5, took
    assert "Traceback" not in str(info.value)


def test_worker_run_exits_3_when_redis_is_unreachable(namespace: str) -> None:
    """`rmq worker run` against a port nothing listens on: exit 3 and one line on stderr, once
    startup_timeout has passed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    env.update(
        RMQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", RMQ_NAMESPACE=namespace,
        RMQ_STARTUP_TIMEOUT="1", RMQ_CONNECT_TIMEOUT="0.5", RMQ_LOG_LEVEL="WARNING",
    )  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rmq", "worker", "run", "tests.apps.recorder:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    took = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: cannot start tests.apps.recorder:app")
    assert "unavailable" in lines[0] and "Traceback" not in done.stderr
    assert took < 15, took  # interpreter start included


@pytest.mark.parametrize("kind", ["gone", "half-open"])
async def test_redis_away_mid_run(
    kind: str, proxy: FaultProxy, server: EmbeddedServer, client: redis.Redis, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A producer sends one message every 20 ms and a worker consumes, both through the proxy.
    For 5 s Redis is gone (every connection reset, new ones refused) or half-open (every
    connection silent). Sends meanwhile fail with BrokerUnavailable ("may or may not be
    stored"); the worker's loops report themselves stuck (`stalled()`, what /readyz shows);
    after the outage both resume by themselves and every acknowledged message is handled."""
    report = Report(f"Redis {kind} for {OUTAGE:g} s mid-run")
    settings = fault_settings(proxy.url, namespace)
    handled = Handled()
    acknowledged: set[str] = set()
    maybe: set[str] = set()
    worker = rmq.App(settings)

    @worker.consumer(TOPIC, group=GROUP, start="first")
    async def handle(msg: rmq.Message) -> None:
        handled.record(msg)

    stuck: list[str | None] = []
    healed_at = 0.0
    async with rmq.App(settings) as producer, running(worker):
        stop = anyio.Event()

        async def produce() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                report.sent += 1
                try:
                    acknowledged.add((await producer.send(TOPIC, n)).msg_id)
                except rmq.BrokerUnavailable:
                    report.failed_sends += 1
                    maybe.add(str(n))
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await anyio.sleep(1.0)
            if kind == "gone":
                proxy.refuse()
                proxy.reset_all()
            else:
                proxy.blackhole()
            await anyio.sleep(OUTAGE)
            stuck.append(worker.context.conn.stalled())
            proxy.heal()
            healed_at = time.monotonic()
            await wait_until(lambda: handled.last_at > healed_at, 20, "the worker to resume")
            report.recovery_seconds = handled.last_at - healed_at
            await anyio.sleep(1.0)
            stop.set()
        await wait_until(lambda: handled.ids >= acknowledged, 20, "every acknowledged message")
        stuck.append(worker.context.conn.stalled())
    report.count(acknowledged, handled)
    report.extra["stuck_during_outage"] = stuck[0]
    report.write(tmp_path)
    assert report.lost == 0
    assert report.failed_sends > 0  # the producer failed clearly instead of hanging
    assert stuck[0] is not None and stuck[1] is None
