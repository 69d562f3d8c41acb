"""rmq on a real 3-primary Redis Cluster: queues spread over the nodes, every script stays in one
slot, and sending, push/pull/orderly/broadcast consumption, retries, delays and the DLQ work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedCluster
from rmq.keys import NamespaceKeys
from tests.conftest import server_binary
from tests.helpers import make_settings, running, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    started = EmbeddedCluster(3, server_binary())
    started.start()
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture
def settings(cluster: EmbeddedCluster, namespace: str) -> rmq.Settings:
    return make_settings(cluster.url, namespace, default_queues=8)


@pytest.fixture
def rc(cluster: EmbeddedCluster) -> Iterator[redis.RedisCluster]:
    client = redis.RedisCluster.from_url(cluster.url)
    yield client
    client.close()


async def test_queues_spread_over_the_nodes(settings: rmq.Settings, rc: redis.RedisCluster) -> None:
    async with rmq.App(settings) as app:
        assert app.context.conn.cluster
        results = [await app.send("spread", n) for n in range(16)]
        assert {r.queue_id for r in results} == set(range(8))
    keys = NamespaceKeys(settings.namespace)
    nodes = {rc.get_node_from_key(keys.queue("spread", q).stream).name for q in range(8)}
    assert len(nodes) >= 2, "a topic's queues live on several primaries"


async def test_send_modes_and_push_consumer(settings: rmq.Settings) -> None:
    app = rmq.App(settings)
    got: list[object] = []

    @app.consumer("orders", group="billing", concurrency=10)
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with running(app):
        await app.send("orders", "one")
        await anyio.sleep(0)
        async with anyio.create_task_group() as tg:
            for n in range(100):
                tg.start_soon(app.send, "orders", n)
        await app.send_batch("orders", ["b1", "b2"], sharding_key="x")
        app.send_oneway("orders", "oneway")
        await app.flush()
        await wait_until(lambda: len(got) == 104, timeout=15)
    assert sorted(str(x) for x in got) == sorted(
        ["one", "b1", "b2", "oneway", *map(str, range(100))]
    )


async def test_retries_delays_and_dead_letters(settings: rmq.Settings) -> None:
    app = rmq.App(settings)
    seen: list[tuple[str, int]] = []

    @app.consumer("flaky", group="g", retry=[0.05], max_retries=1)
    async def handle(msg: rmq.Message) -> None:
        seen.append((msg.body, msg.reconsume_times))
        if msg.body == "bad" or msg.reconsume_times == 0:
            raise ValueError("no")

    async with running(app):
        await app.send("flaky", "ok")
        await app.send("flaky", "bad")
        await app.send("flaky", "later", delay=0.3)
        dlq = app.dead_letters("flaky", "g")
        await wait_until(lambda: ("later", 1) in seen and ("ok", 1) in seen, timeout=15)
        for _ in range(300):
            if await dlq.count() == 1:
                break
            await anyio.sleep(0.02)
        (letter,) = await dlq.entries()
        assert letter.message is not None and letter.message.body == "bad"
        assert len(await dlq.replay([letter], to="topic")) == 1
        await wait_until(lambda: seen.count(("bad", 0)) == 2, timeout=10)


async def test_pull_consumer(settings: rmq.Settings) -> None:
    async with rmq.App(settings) as app:
        async with app.pull_consumer("pulled", "g") as pc:
            async with anyio.create_task_group() as tg:

                async def send_later() -> None:
                    await anyio.sleep(0.3)
                    await app.send("pulled", "late")

                tg.start_soon(send_later)
                msgs = await pc.receive(wait=5)
            assert [m.body for m in msgs] == ["late"]
            await app.send_batch("pulled", list(range(20)))
            got: list[int] = []
            while batch := await pc.receive(max_messages=7):
                got += [m.body for m in batch]
                assert await pc.ack(*batch) == len(batch)
            assert sorted(got) == list(range(20))
            assert await pc.ack(*msgs) == 1
            assert await pc.ack(*msgs) == 0


async def test_orderly_and_broadcasting(settings: rmq.Settings) -> None:
    settings = settings.replace(lease_ttl=1.5, rebalance_interval=0.2)
    members = [rmq.App(settings), rmq.App(settings)]
    log: list[tuple[str, int]] = []
    casts: list[list[int]] = [[], []]
    for i, member in enumerate(members):

        @member.consumer("ledger", group="g", mode="orderly")
        async def post(msg: rmq.Message) -> None:
            log.append((msg.body["key"], msg.body["seq"]))

        @member.consumer("config", group="cache", model="broadcasting")
        async def cache(msg: rmq.Message, i: int = i) -> None:
            casts[i].append(msg.body)

    async def send(key: str, seq: int) -> None:
        await members[0].send("ledger", {"key": key, "seq": seq}, sharding_key=key)

    async with running(members[0]), running(members[1]):
        for seq in range(10):
            async with anyio.create_task_group() as tg:
                for key in ("a", "b", "c", "d"):
                    tg.start_soon(send, key, seq)
        await members[1].send_batch("config", [1, 2, 3])
        await wait_until(lambda: len(log) >= 40 and all(len(c) == 3 for c in casts), timeout=20)
    for key in ("a", "b", "c", "d"):
        seqs = [s for k, s in log if k == key]
        firsts = list(dict.fromkeys(seqs))
        assert firsts == list(range(10))


async def test_transactions(settings: rmq.Settings) -> None:
    async with rmq.App(settings) as app:
        producer = app.producer(group="tx")
        async with producer.transaction() as tx:
            for n in range(8):
                await tx.send("payments", n, sharding_key=f"k{n}")  # several queues and nodes
        with pytest.raises(ValueError, match="abort"):
            async with producer.transaction() as tx:
                await tx.send("payments", "never", sharding_key="k1")
                raise ValueError("abort")
        async with app.pull_consumer("payments", "reader", start="first") as pc:
            got = [m.body for m in await pc.receive(max_messages=32)]
    assert sorted(got) == list(range(8))


async def test_concurrent_transactions_merge_per_queue(settings: rmq.Settings) -> None:
    async def commit(msg: rmq.Message, arg: object) -> rmq.TransactionState:
        return rmq.TransactionState.COMMIT

    async with rmq.App(settings) as app:
        producer = app.producer(group="tx")
        results = await asyncio.gather(
            *[producer.send_in_transaction("merged", n, execute=commit) for n in range(80)]
        )  # 8 queues on 3 nodes: prepares and commits merge per queue, never across
        assert len({r.queue_id for r in results}) == 8
        async with app.pull_consumer("merged", "reader", start="first") as pc:
            got: list[int] = []
            for _ in range(10):
                got += [m.body for m in await pc.receive(max_messages=100)]
    assert sorted(got) == list(range(80))


async def test_dead_letters_purged_by_age_on_every_node(settings: rmq.Settings) -> None:
    app = rmq.App(settings)

    @app.consumer("doomed", group="g")
    async def reject(msg: rmq.Message) -> None:
        raise rmq.Reject("no")

    async with running(app):
        await app.send_batch("doomed", list(range(4)), sharding_key="a")
        for n in range(8):
            await app.send("doomed", n)
        dlq = app.dead_letters("doomed", "g")
        await wait_until_async(lambda: dlq.count(), 12)
        assert len({letter.queue_id for letter in await dlq.entries()}) == 8
        assert await dlq.purge_older_than(3600) == 0
        await anyio.sleep(0.05)
        assert await dlq.purge_older_than(0.01, dry_run=True) == 12
        assert await dlq.purge_older_than(0.01) == 12
        assert await dlq.count() == 0


async def wait_until_async(read: Callable[[], Awaitable[int]], value: int) -> None:
    for _ in range(500):
        if await read() == value:
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"never reached {value}")


async def test_pending_transactions_listed_across_nodes(settings: rmq.Settings) -> None:
    async with rmq.App(settings) as app:
        producer = app.producer(group="undecided")
        for n in range(8):
            await producer.send_in_transaction(
                "halves", n, execute=lambda msg, arg: rmq.TransactionState.UNKNOWN,
                sharding_key=f"k{n}",
            )  # fmt: skip
        pending = await app.admin.pending_transactions("halves", group="undecided")
        assert sorted(p.message.body for p in pending if p.message) == list(range(8))
        counts = await app.admin.transaction_counts("halves")
        assert sum(c.pending for c in counts) == 8


async def test_admin_on_a_cluster(settings: rmq.Settings) -> None:
    async with rmq.App(settings) as app:
        await app.send_batch("admin", [1, 2, 3], sharding_key="k")
        status = await app.admin.topic_status("admin")
        assert sum(q.length for q in status.queues) == 3
        assert await app.cancel_delayed("admin", "nothing") is False


async def test_retention_trims_every_node(settings: rmq.Settings, rc: redis.RedisCluster) -> None:
    app = rmq.App(settings.replace(retention=0.05, trim_interval=0.1))
    got: list[int] = []

    @app.consumer("kept", group="billing")
    async def handle(msg: rmq.Message) -> None:
        if msg.body == 0 and msg.reconsume_times == 0:
            raise rmq.Retry(delay=0.05)  # one retry stream entry too
        got.append(msg.body)

    keys = NamespaceKeys(settings.namespace)
    queues = [keys.queue("kept", q) for q in range(8)]
    async with running(app):
        await app.send_batch("kept", list(range(8)), sharding_key="a")
        for n in range(8, 24):
            await app.send("kept", n)
        await wait_until(lambda: sorted(got) == list(range(24)), timeout=20)
        await wait_until(
            lambda: sum(int(rc.xlen(q.stream)) + int(rc.xlen(q.retry_stream("billing")))
                        for q in queues) == 0,
            what="every queue trimmed",
        )  # fmt: skip
        async with rmq.App(settings) as admin_app:
            await admin_app.send("kept", "late")
            dry = await admin_app.admin.trim("kept", dry_run=True)
    assert dry.removed == 0, "this app keeps the default 72 h"
    assert len(dry.streams) == 16


def _move_slot(cluster: EmbeddedCluster, slot: int, source: int, target: int) -> int:
    """Reshard `slot` from node port `source` to node port `target` as redis-cli does; returns
    how many keys moved."""
    nodes = {s.port: redis.Redis(port=s.port) for s in cluster.servers}
    try:
        ids = {port: client.execute_command("CLUSTER", "MYID").decode() for port, client in
               nodes.items()}  # fmt: skip
        nodes[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        nodes[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        moved = 0
        while keys := nodes[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
            nodes[source].execute_command(
                "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys
            )
            moved += len(keys)
            time.sleep(0.02)  # let traffic hit the half-moved slot (ASK and TRYAGAIN replies)
        for port in (target, source, *[p for p in nodes if p not in (source, target)]):
            nodes[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        return moved
    finally:
        for client in nodes.values():
            client.close()


async def test_resharding_while_sending_and_consuming_loses_nothing(
    cluster: EmbeddedCluster, settings: rmq.Settings, rc: redis.RedisCluster
) -> None:
    keys = NamespaceKeys(settings.namespace).queue("moving", 0)
    app = rmq.App(settings.replace(default_queues=1, visibility_timeout=2.0))
    got: list[int] = []

    @app.consumer("moving", group="g", concurrency=8, retry=[0.05])
    async def handle(msg: rmq.Message) -> None:
        if msg.body % 7 == 0 and msg.reconsume_times == 0:
            raise ValueError("retry me")  # keeps the retry stream and delay set of the slot busy
        got.append(msg.body)

    total = 600
    async with running(app):
        await app.send("moving", -1)
        await wait_until(lambda: -1 in got, timeout=10)
        slot = rc.keyslot(keys.stream)
        source = rc.get_node_from_key(keys.stream).port
        target = next(s.port for s in cluster.servers if s.port != source)

        async def send_all() -> None:
            for n in range(total):
                await app.send("moving", n)
                await anyio.sleep(0.002)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_all)
            await anyio.sleep(0.3)
            moved = await anyio.to_thread.run_sync(_move_slot, cluster, slot, source, target)
        await wait_until(lambda: set(range(total)) <= set(got), timeout=30)
    assert moved >= 2  # the stream and its companions (dedup, retry, delay...) moved together
    rc.nodes_manager.initialize()
    assert rc.get_node_from_key(keys.stream).port == target
    assert set(got) == {-1, *range(total)}
