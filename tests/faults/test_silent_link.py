"""A silent link: connections that stay open but carry nothing (a NAT or firewall forgot them, a
peer vanished). Every round trip is bounded, so a worker notices, drops the connection and goes on
on a new one; and while a loop cannot get a reply, `/readyz` says so and the heartbeat stops."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer, free_port
from rmq.health import alive_members, heartbeat_key
from tests.chaos import Records, WorkerPool, worker_env
from tests.faults import Handled, Report, fault_settings
from tests.helpers import running, wait_until
from tests.proxy import FaultProxy

pytestmark = pytest.mark.timeout(90)

TOPIC = "chaos"  # tests.apps.recorder's defaults
GROUP = "recorder"
MESSAGES = 100


@pytest.mark.parametrize("mode", ["concurrently", "orderly"])
async def test_worker_resumes_after_its_connections_go_silent(
    mode: str, proxy: FaultProxy, server: EmbeddedServer, namespace: str, tmp_path: Path
) -> None:
    """Every connection the worker has goes half-open at once; new connections work. The
    worker's reads, acks, leases and maintenance time out (socket_timeout, plus BLOCK for a
    blocking read), reconnect, and consume all 100 messages sent meanwhile (before, with no
    socket timeout on its loops, it consumed none of them in 25 s)."""
    report = Report(f"every connection half-open at once ({mode})")
    handled = Handled()
    worker = rmq.App(fault_settings(proxy.url, namespace, default_queues=2))

    @worker.consumer(TOPIC, group=GROUP, start="first", mode=mode)  # type: ignore[arg-type]
    async def handle(msg: rmq.Message) -> None:
        handled.record(msg)

    acknowledged: set[str] = set()
    async with rmq.App(fault_settings(server.url, namespace, default_queues=2)) as direct:
        async with running(worker):
            warm = (await direct.send(TOPIC, "warm-up")).msg_id
            acknowledged.add(warm)
            await wait_until(lambda: warm in handled.ids, 10, "the warm-up message")
            await anyio.sleep(0.5)
            frozen = proxy.open_links
            proxy.freeze()
            started = time.monotonic()
            for n in range(MESSAGES):
                acknowledged.add((await direct.send(TOPIC, n)).msg_id)
            await wait_until(lambda: handled.ids >= acknowledged, 30, "every message")
            report.recovery_seconds = time.monotonic() - started
            await wait_until(lambda: worker.context.conn.stalled() is None, 10, "no stuck loop")
    report.sent = len(acknowledged)
    report.count(acknowledged, handled)
    report.extra["frozen_connections"] = frozen
    report.write(tmp_path)
    assert frozen >= 3
    assert report.lost == 0
    if mode == "concurrently":
        assert report.duplicated == 0
    assert report.recovery_seconds < 15


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


async def _get(url: str) -> tuple[int, str]:
    """GET in a thread: the proxy runs on this event loop and must keep pumping meanwhile."""
    return await anyio.to_thread.run_sync(_fetch, url)


async def _until(url: str, status: int, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got, body = await _get(url)
        if got == status and text in body:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: wanted {status} {text!r}, got {got} {body!r}")
        await anyio.sleep(0.1)


async def test_readyz_and_the_heartbeat_report_a_stuck_fetch_loop(
    proxy: FaultProxy, server: EmbeddedServer, client: redis.Redis, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A worker process (`rmq worker run`, through the proxy) whose blocking reads never get a
    reply (every XREADGROUP's reply is swallowed; everything else works): its fetch loop times
    out and reconnects over and over and consumes nothing. /readyz turns 503 ("stuck") and the
    heartbeat stops, so `rmq worker check` and the supervisor see it too; once reads are answered
    again, it is ready and beating, and consumes what was sent meanwhile."""
    report = Report("every blocking read unanswered (worker process)")
    settings = fault_settings(proxy.url, namespace, default_queues=2)
    port = free_port()
    readyz = f"http://127.0.0.1:{port}/readyz"
    key = heartbeat_key(namespace, "tests.apps.recorder:app")
    interval = settings.heartbeat_interval
    with WorkerPool(tmp_path, worker_env(settings, RMQ_HEALTH_PORT=port)) as pool:
        worker = pool.start("w")
        await worker.wait_ready()
        await _until(readyz, 200, "ready", 10)
        proxy.blackhole_reply("XREADGROUP", every=True)
        started = time.monotonic()
        acknowledged: set[str] = set()
        async with rmq.App(fault_settings(server.url, namespace, default_queues=2)) as direct:
            for n in range(20):
                acknowledged.add((await direct.send(TOPIC, n)).msg_id)

            await _until(readyz, 503, "stuck", 15)
            report.extra["not_ready_after_seconds"] = round(time.monotonic() - started, 3)
            report.extra["readyz"] = (await _get(readyz))[1].strip()
            await anyio.sleep(3 * interval + 0.3)
            alive = await alive_members(direct.context.conn.commands, key, interval)
            report.extra["alive_while_stuck"] = len(alive)
            handled_while_stuck = len(Records.read(worker.out).done_ids & acknowledged)
            proxy.heal()
            healed = time.monotonic()
            await _until(readyz, 200, "ready", 15)
            report.recovery_seconds = time.monotonic() - healed
            await wait_until(
                lambda: Records.read(worker.out).done_ids >= acknowledged, 15, "every message"
            )
            for _ in range(50):  # beating again within an interval or two
                if await alive_members(direct.context.conn.commands, key, interval):
                    break
                await anyio.sleep(0.1)
            else:
                raise AssertionError("the worker does not beat again")
        worker.send_signal(2)
        assert await worker.wait_exit(15) == 0
    records = Records.read(worker.out)
    report.sent = report.acknowledged = len(acknowledged)
    report.handled = len(records.done_ids & acknowledged)
    report.lost = len(acknowledged - records.done_ids)
    report.duplicated = sum(n - 1 for n in records.dones.values() if n > 1)
    report.extra["handled_while_stuck"] = handled_while_stuck
    report.write(tmp_path)
    assert handled_while_stuck <= 1  # the read already in flight when the fault was armed
    assert report.extra["alive_while_stuck"] == 0
    assert report.lost == 0
    assert (
        report.extra["not_ready_after_seconds"]
        < 2 * (settings.block_seconds + settings.socket_timeout) + 2
    )
