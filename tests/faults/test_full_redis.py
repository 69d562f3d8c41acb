"""A full Redis (`maxmemory`, policy `noeviction`): writes are refused, and rmq says so
(`BrokerFull`), never half-writing a batch; consumers keep acknowledging and draining, orderly
leases hold, and trimming frees the memory, because the scripts that only remove, acknowledge or
renew a lease are flagged `allow-oom`."""

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
from rmq.embedded import EmbeddedServer
from rmq.keys import NamespaceKeys
from tests.faults import Handled, Report, fault_settings
from tests.helpers import running, wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "bulk"
BATCH = 5
BODY = 20_000  # random bytes do not compress


@pytest.fixture
def full_server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    extra = ("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    return server_factory(extra_args=extra).start()


def memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


async def test_full_redis_refuses_clearly_and_drains(
    full_server: EmbeddedServer, namespace: str, tmp_path: Path
) -> None:
    report = Report("Redis full (maxmemory 4mb, noeviction)")
    client = redis.Redis(port=full_server.port)
    stream = NamespaceKeys(namespace).queue(TOPIC, 0).stream
    settings = fault_settings(
        full_server.url, namespace, default_queues=1, retention=0.0, trim_interval=3600.0,
        visibility_timeout=30.0, lease_ttl=3.0,
    )  # fmt: skip
    gate = anyio.Event()
    push, orderly = Handled(), Handled()
    order: list[int] = []
    worker = rmq.App(settings)

    @worker.consumer(TOPIC, group="push", start="first", concurrency=2, prefetch=4)
    async def consume(msg: rmq.Message) -> None:
        await gate.wait()
        push.record(msg)

    @worker.consumer(TOPIC, group="orderly", start="first", mode="orderly")
    async def in_order(msg: rmq.Message) -> None:
        await gate.wait()
        orderly.record(msg)
        order.append(int(msg.properties["n"]))

    acknowledged: set[str] = set()
    async with rmq.App(settings) as app:
        await app.admin.create_topic(TOPIC, 1)
        async with app.pull_consumer(TOPIC, "pull", start="first") as pc, running(worker):
            # fill it up, one batch of 5 at a time, until Redis refuses
            n = 0
            with pytest.raises(rmq.BrokerFull, match="Redis is full") as refused:
                while True:
                    batch = [
                        rmq.Message(os.urandom(BODY), properties={"n": str(n + i)})
                        for i in range(BATCH)
                    ]
                    results = await app.send_batch(TOPIC, batch)
                    acknowledged.update(r.msg_id for r in results)
                    n += BATCH
            report.extra["refusal"] = str(refused.value)
            while True:  # top up with raw writes until even a small one is refused
                try:
                    client.xadd(f"{namespace}:filler", {"x": os.urandom(2000)})
                except redis.exceptions.ResponseError:
                    break
            stored = client.xlen(stream)
            report.extra["stored_when_full"] = stored
            assert stored == n == len(acknowledged)  # every batch whole, or not at all

            with pytest.raises(rmq.BrokerFull):
                await app.send(TOPIC, "one more")
            with pytest.raises(rmq.BrokerFull):
                await app.send_batch(TOPIC, [b"a", b"b", b"c"])
            with pytest.raises(rmq.BrokerFull):
                await app.send("new-topic", "x")  # the topic cannot even be created
            assert client.xlen(stream) == stored

            # pull consumers receive and acknowledge while Redis is full
            received = await pc.receive(max_messages=BATCH * 2)
            assert len(received) == BATCH * 2
            assert await pc.ack(*received) == BATCH * 2
            pulled = {m.msg_id for m in received}

            # push and orderly consumers acknowledge and go on reading while it is full
            started = time.monotonic()
            gate.set()
            await wait_until(lambda: push.ids >= acknowledged, 30, "the push group to drain")
            await wait_until(lambda: orderly.ids >= acknowledged, 30, "the orderly group")
            report.extra["drain_seconds"] = round(time.monotonic() - started, 3)
            assert order == sorted(order)
            orderly_consumer = worker.running_consumers[1]
            assert orderly_consumer.stats.acked == stored  # fenced acks under its lease
            while batch_ := await pc.receive(max_messages=50):
                pulled |= {m.msg_id for m in batch_}
                await pc.ack(*batch_)
            assert pulled == acknowledged
            await wait_until(
                lambda: all(
                    client.xpending(stream, g)["pending"] == 0 for g in ("push", "orderly", "pull")
                ),
                10, "every outcome written",
            )  # fmt: skip

            # trimming (what `rmq topic trim` runs) frees the memory: sends work again
            before = memory(client)
            env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
            env.update(RMQ_REDIS_URL=full_server.url, RMQ_NAMESPACE=namespace, RMQ_RETENTION="0")
            done = subprocess.run(
                [sys.executable, "-m", "rmq", "--json", "topic", "trim", TOPIC],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            client.delete(f"{namespace}:filler")
            after = memory(client)
            report.extra.update(memory_before_trim=before, memory_after_trim=after)
            assert client.xlen(stream) == 0
            assert after < before
            acknowledged.add((await app.send(TOPIC, "room again")).msg_id)
            await wait_until(lambda: push.ids >= acknowledged, 10, "the last message")
            await wait_until(lambda: orderly.ids >= acknowledged, 10, "the last message")
    report.sent = report.acknowledged = len(acknowledged)
    report.handled = len(push.ids & orderly.ids & acknowledged)
    report.lost = len(acknowledged - push.ids) + len(acknowledged - orderly.ids)
    report.duplicated = push.duplicated + orderly.duplicated
    report.write(tmp_path)
    assert report.lost == 0 and report.duplicated == 0
    client.close()
