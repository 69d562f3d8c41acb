"""A reset or a half-open link while the reply of a blocking read, an ack, a retry or a commit is
on its way: the worker notices within a bounded time, reconnects, and the effect of what Redis
ran is visible exactly once.

Each scenario: a worker consumes through the proxy (for the commit, the producer goes through
it); the fault is armed for the next request that carries the command (for a script, its SHA);
a probe message meets it, a follower comes 50 ms later, then more messages. Recovery time: from
the probe's send until both were handled and their outcomes written. A reset is noticed at once,
a half-open link after the round trip's deadline (socket_timeout, plus the BLOCK of a blocking
read: 1.3 s here).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer
from rmq.keys import NamespaceKeys
from rmq.scripts import Scripts
from tests.faults import Handled, Report, fault_settings
from tests.helpers import running, wait_until
from tests.proxy import FaultProxy

pytestmark = pytest.mark.timeout(60)

TOPIC, GROUP, QUEUES = "jobs", "workers", 2
SCRIPTS = Scripts()
FAULTS = ["reset_reply", "blackhole_reply"]


def pending(client: redis.Redis, namespace: str) -> int:
    keys = NamespaceKeys(namespace)
    total = 0
    for q in range(QUEUES):
        queue = keys.queue(TOPIC, q)
        for stream in (queue.stream, queue.retry_stream(GROUP)):
            if client.exists(stream):
                total += int(client.xpending(stream, GROUP)["pending"])
    return total


@asynccontextmanager
async def worker(
    url: str, namespace: str, handled: Handled, attempts: Counter[str], *, fail_first: bool = False
) -> AsyncIterator[rmq.App]:
    """A worker app consuming TOPIC through `url`; with `fail_first`, every message's first
    attempt fails (it is retried 0.1 s later)."""
    app = rmq.App(fault_settings(url, namespace, default_queues=QUEUES))

    @app.consumer(TOPIC, group=GROUP, start="first", retry=[0.1], max_retries=3)
    async def handle(msg: rmq.Message) -> None:
        attempts[msg.msg_id] += 1
        if fail_first and msg.reconsume_times == 0:
            raise RuntimeError("the first attempt fails")
        handled.record(msg)

    async with running(app):
        yield app


async def scenario(
    name: str,
    *,
    proxy: FaultProxy,
    server: EmbeddedServer,
    client: redis.Redis,
    namespace: str,
    tmp_path: Path,
    fault: str,
    needle: str | bytes,
    fail_first: bool = False,
) -> Report:
    report = Report(f"{fault.replace('_', ' ')} of {name}")
    handled, attempts = Handled(), Counter[str]()
    acknowledged: set[str] = set()
    direct = rmq.App(fault_settings(server.url, namespace, default_queues=QUEUES))
    async with direct, worker(proxy.url, namespace, handled, attempts, fail_first=fail_first):

        async def send(body: object) -> str:
            msg_id = (await direct.send(TOPIC, body)).msg_id
            acknowledged.add(msg_id)
            return msg_id

        warm = await send("warm-up")  # every connection of the worker is open
        await wait_until(lambda: warm in handled.ids and pending(client, namespace) == 0)
        getattr(proxy, fault)(needle)
        await anyio.sleep(0.5)  # the next blocking read (at most block_seconds away) is armed
        started = time.monotonic()
        probe = await send("probe")
        await anyio.sleep(0.05)
        follower = await send("follower")  # its outcome waits for the loop to recover
        await wait_until(
            lambda: {probe, follower} <= handled.ids and pending(client, namespace) == 0,
            15, "the probe and its follower",
        )  # fmt: skip
        report.recovery_seconds = time.monotonic() - started
        for n in range(20):
            await send(n)
        await wait_until(lambda: handled.ids >= acknowledged, 15, "every message")
        await wait_until(lambda: pending(client, namespace) == 0, 10, "no pending entry")
        await anyio.sleep(0.5)  # nothing comes back late
    report.sent = len(acknowledged)
    report.count(acknowledged, handled)
    report.extra["fired"] = proxy.fired
    report.extra["probe_attempts"] = attempts[probe]
    assert proxy.fired == 1, "the fault never met its command"
    return report


@pytest.mark.parametrize("fault", FAULTS)
async def test_blocking_read(
    fault: str, proxy: FaultProxy, server: EmbeddedServer, client: redis.Redis, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The XREADGROUP that delivers the probe loses its reply: the entry is in this consumer's
    pending list, and after reconnecting the fetcher reads its own pending entries first."""
    report = await scenario(
        "a blocking read", proxy=proxy, server=server, client=client, namespace=namespace,
        tmp_path=tmp_path, fault=fault, needle="XREADGROUP",
    )  # fmt: skip
    report.write(tmp_path)
    assert report.lost == 0 and report.duplicated == 0
    assert report.recovery_seconds is not None and report.recovery_seconds < 5


@pytest.mark.parametrize("fault", FAULTS)
async def test_ack(
    fault: str, proxy: FaultProxy, server: EmbeddedServer, client: redis.Redis, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The XACK of the probe ran but its reply is lost: the acker writes it again (an XACK of an
    entry no longer pending changes nothing); the entry is never delivered again."""
    report = await scenario(
        "an ack", proxy=proxy, server=server, client=client, namespace=namespace,
        tmp_path=tmp_path, fault=fault, needle="XACK",
    )  # fmt: skip
    report.write(tmp_path)
    assert report.lost == 0 and report.duplicated == 0
    assert report.extra["probe_attempts"] == 1


@pytest.mark.parametrize("fault", FAULTS)
async def test_retry_script(
    fault: str, proxy: FaultProxy, server: EmbeddedServer, client: redis.Redis, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The probe's first attempt fails; the retry script (ack + schedule a copy) ran but its
    reply is lost; written again, it finds the entry no longer pending and schedules nothing:
    one retry, so two attempts and one success."""
    report = await scenario(
        "a retry script", proxy=proxy, server=server, client=client, namespace=namespace,
        tmp_path=tmp_path, fault=fault, needle=SCRIPTS["retry"].sha, fail_first=True,
    )  # fmt: skip
    report.write(tmp_path)
    assert report.lost == 0 and report.duplicated == 0
    assert report.extra["probe_attempts"] == 2
    keys = NamespaceKeys(namespace)
    assert all(client.zcard(keys.queue(TOPIC, q).retry(GROUP)) == 0 for q in range(QUEUES))


@pytest.mark.parametrize("fault", FAULTS)
async def test_commit_script(
    fault: str, proxy: FaultProxy, server: EmbeddedServer, client: redis.Redis, namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A transaction's commit ran but its reply is lost. After a reset the commit is sent again
    and answered from the outcome it recorded; after a half-open link the send budget runs out
    (BrokerUnavailable: the check-back would resolve it). Either way the message is visible,
    and delivered, exactly once."""
    report = Report(f"{fault.replace('_', ' ')} of a commit script")
    handled, attempts = Handled(), Counter[str]()
    settings = fault_settings(proxy.url, namespace, default_queues=QUEUES)
    async with rmq.App(settings) as app, worker(server.url, namespace, handled, attempts):
        producer = app.producer(group="tx")
        async with producer.transaction() as tx:
            warm = await tx.send(TOPIC, "warm-up")
        await wait_until(lambda: warm.msg_id in handled.ids)
        getattr(proxy, fault)(SCRIPTS["commit"].sha)
        started = time.monotonic()
        outcome = "committed"
        try:
            async with producer.transaction() as tx:
                probe = await tx.send(TOPIC, "probe")
        except rmq.BrokerUnavailable:
            outcome = "unknown (left to the check-back)"
        await wait_until(lambda: probe.msg_id in handled.ids, 15, "the probe")
        report.recovery_seconds = time.monotonic() - started
        await anyio.sleep(0.5)
    acknowledged = {warm.msg_id, probe.msg_id}
    report.sent = 2
    report.count(acknowledged, handled)
    report.extra.update(fired=proxy.fired, outcome=outcome)
    report.write(tmp_path)
    assert proxy.fired == 1
    assert report.lost == 0 and report.duplicated == 0
    assert outcome == "committed" if fault == "reset_reply" else True
