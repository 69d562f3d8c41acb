"""Retention against a real Redis: workers trim in the background without losing anything, lagging
groups and broadcasting instances hold trimming back, topics override the settings, hard caps
discard and report, and `app.admin.trim` reports per stream."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

import anyio
import pytest
import redis

import rmq
from rmq import metrics
from rmq.keys import NamespaceKeys
from rmq.retention import Trimmer, policy
from rmq.topics import TopicInfo
from tests.helpers import running, wait_until

FAST = {"retention": 0.05, "trim_interval": 0.1}


def lengths(r: redis.Redis, keys: list[str]) -> int:
    return sum(int(r.xlen(k)) for k in keys)


def streams(namespace: str, topic: str, queues: int, group: str | None = None) -> list[str]:
    keys = NamespaceKeys(namespace)
    out = [keys.queue(topic, q).stream for q in range(queues)]
    if group:
        out += [keys.queue(topic, q).retry_stream(group) for q in range(queues)]
    return out


async def test_worker_trims_while_consuming_and_loses_nothing(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    app = rmq.App(settings.replace(default_queues=2, **FAST))
    handled: Counter[int] = Counter()
    failed: set[int] = set()

    @app.consumer("orders", group="billing", concurrency=8)
    async def bill(msg: rmq.Message) -> None:
        n = msg.body["n"]
        if n % 7 == 0 and n not in failed:  # some go through the retry stream
            failed.add(n)
            raise rmq.Retry(delay=0.05)
        await anyio.sleep(random.uniform(0, 0.005))
        handled[n] += 1

    total = 300
    async with running(app):
        for start in range(0, total, 30):
            await app.send_batch("orders", [{"n": n} for n in range(start, start + 30)])
            await anyio.sleep(0.05)
        await wait_until(lambda: len(handled) == total, timeout=20, what="every message handled")
        keys = streams(namespace, "orders", 2, "billing")
        await wait_until(lambda: lengths(r, keys) == 0, timeout=10, what="the streams trimmed")
        stored = total + len(failed)  # each retry is one more entry, in the retry stream
        await wait_until(lambda: app.trimmer.removed == stored)
    assert set(handled) == set(range(total)), "nothing lost to trimming"
    assert failed and all(handled[n] >= 1 for n in failed)


async def test_a_lagging_group_holds_the_worker_back(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    quick = rmq.App(settings.replace(default_queues=1, **FAST))
    lagging = rmq.App(settings.replace(default_queues=1))
    got: list[int] = []
    late: list[int] = []

    @quick.consumer("orders", group="billing")
    async def bill(msg: rmq.Message) -> None:
        got.append(msg.body)

    @lagging.consumer("orders", group="audit")
    async def audit(msg: rmq.Message) -> None:
        late.append(msg.body)

    async with lagging:  # declares "audit" at the end of the (empty) stream, then stops
        pass
    (stream,) = streams(namespace, "orders", 1)
    async with running(quick):
        await quick.send_batch("orders", list(range(20)))
        await wait_until(lambda: len(got) == 20)
        await anyio.sleep(0.5)  # several trim intervals
        assert r.xlen(stream) == 20, "audit has not read them: nothing trimmed"
        async with running(lagging):
            await wait_until(lambda: len(late) == 20)
        await wait_until(lambda: r.xlen(stream) == 0, what="trimmed once audit caught up")
    assert sorted(late) == list(range(20))


async def test_broadcasting_offsets_hold_trimming_back(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    app = rmq.App(settings.replace(default_queues=1, lease_ttl=1.5, **FAST))
    got: list[Any] = []

    @app.consumer("config", group="cache", model="broadcasting")
    async def refresh(msg: rmq.Message) -> None:
        got.append(msg.body)

    (stream,) = streams(namespace, "config", 1)
    offsets = NamespaceKeys(namespace).queue("config", 0).broadcast_offsets("cache")
    async with running(app):
        assert r.smembers(NamespaceKeys(namespace).topic_groups("config")) == {b"cache"}
        await app.send_batch("config", ["a", "b", "c"])
        await wait_until(lambda: len(got) == 3)
        await wait_until(lambda: r.xlen(stream) == 0, what="read by every instance: trimmed")
        first = (await app.send("config", "d")).offset
        r.hset(offsets, "gone:app:7", "0-1")  # an instance that stopped before reading "d"
        await app.send("config", "e")
        await wait_until(lambda: len(got) == 5)
        await anyio.sleep(0.5)
        assert r.xrange(stream)[0][0].decode() == first, "kept for the stale instance"
        assert r.xlen(stream) == 2
        r.hdel(offsets, "gone:app:7")  # rmq.consumer.broadcast.remove_broadcast_instance does it
        await wait_until(lambda: r.xlen(stream) == 0)


async def test_admin_trim_dry_run_and_report(opened: rmq.App, r: redis.Redis) -> None:
    admin = opened.admin
    await admin.create_topic("orders", queues=2, retention=0.0)
    pc = opened.pull_consumer("orders", "billing")
    async with pc:
        await opened.send_batch("orders", list(range(6)), sharding_key="a")
        await opened.send_batch("orders", list(range(6, 10)), sharding_key="b")
        batch: list[rmq.Message] = []
        while len(batch) < 10:
            batch += await pc.receive(20, 30, 2)
        for msg in batch:
            if msg.body not in (2, 8):  # two stay pending
                await pc.ack(msg)
        dry = await admin.trim("orders", dry_run=True)
        assert dry.dry_run and dry.removed > 0
        assert sum(int(r.xlen(s)) for s in streams(opened.settings.namespace, "orders", 2)) == 10
        result = await admin.trim("orders")
    assert result.removed == dry.removed
    assert result.groups == ["billing"]
    assert result.retention == policy(opened.settings, await admin.topic("orders"))
    assert result.retention.retention == 0
    queue_rows = [s for s in result.streams if s.stream == "queue"]
    assert {s.held_by for s in queue_rows} == {"group billing"}
    left = sorted(
        [m.body for q in range(2) for m in await admin.messages("orders", queue=q, count=50)]
    )
    assert left[0] in (2, 8) and {2, 8} <= set(left), "pending entries are kept"
    assert sum(s.kept for s in queue_rows) == len(left)
    assert result.removed + len(left) == 10
    assert [s.stream for s in result.streams] == ["queue", "retry:billing"] * 2


async def test_hard_cap_discards_and_counts(opened: rmq.App, r: redis.Redis) -> None:
    admin = opened.admin
    await admin.create_topic("orders", queues=1, retention_max_len=3)
    async with opened.pull_consumer("orders", "audit"):  # subscribed, reads nothing
        pass
    await opened.send_batch("orders", list(range(8)))
    result = await admin.trim("orders")
    assert (result.removed, result.removed_unacked) == (5, 5)
    assert result.streams[0].held_by == "cap"
    assert [m.body for m in await admin.messages("orders", count=10)] == [5, 6, 7]
    info = await admin.update_topic("orders", retention_max_len=0)  # off for this topic
    assert policy(opened.settings, info).max_len is None


async def test_topic_overrides_and_old_configs(opened: rmq.App, r: redis.Redis) -> None:
    admin = opened.admin
    info, created = await admin.create_topic("orders", queues=2, retention=3600.0)
    assert created and info.retention == 3600.0
    assert policy(opened.settings, info).retention == 3600.0
    same, created = await admin.create_topic("orders", queues=2, retention_max_age=86400.0)
    assert not created and (same.retention, same.retention_max_age) == (3600.0, 86400.0)
    reset = await admin.update_topic("orders", retention=None)
    assert reset.retention is None
    assert policy(opened.settings, reset).retention == opened.settings.retention
    old = TopicInfo.from_json("legacy", b'{"queues": 3, "created_ms": 5}')
    assert (old.queues, old.retention, old.retention_max_len, old.retention_max_age) == (
        3, None, None, None,
    )  # fmt: skip
    with pytest.raises(rmq.ConfigError):
        await admin.update_topic("orders", retention=-1.0)
    with pytest.raises(rmq.TopicNotFound):
        await admin.update_topic("nope", retention=1.0)
    with pytest.raises(rmq.TopicNotFound):
        await admin.trim("nope")


async def test_trimmer_survives_errors(opened: rmq.App, r: redis.Redis, namespace: str) -> None:
    ctx = opened.context
    await opened.send("orders", "x")
    r.set(NamespaceKeys(namespace).topic_groups("orders"), "not a set")  # WRONGTYPE
    with pytest.raises(rmq.BrokerError, match="WRONGTYPE"):  # an rmq error, never redis-py's
        await Trimmer(ctx, "orders").trim_once()
    fast = Trimmer(
        dataclasses.replace(ctx, settings=ctx.settings.replace(trim_interval=0.05)), "orders"
    )
    async with anyio.create_task_group() as tg:
        await tg.start(fast.run)
        await anyio.sleep(0.3)  # fails every round, logs, keeps going
        r.delete(NamespaceKeys(namespace).topic_groups("orders"))
        await wait_until(lambda: fast.rounds > 0)
        tg.cancel_scope.cancel()
    assert await Trimmer(ctx, "missing").trim_once() == []


async def test_trimmer_counts_trimmed_entries_in_metrics(opened: rmq.App, r: redis.Redis) -> None:
    admin = opened.admin
    topic = f"trim-metrics-{random.randrange(10**9)}"  # metrics are per process: a fresh label
    await admin.create_topic(topic, queues=1, retention=0.0, retention_max_len=2)
    async with opened.pull_consumer(topic, "audit") as pc:
        await opened.send_batch(topic, list(range(6)))
        for message in await pc.receive(max_messages=2, wait=1.0):
            await pc.ack(message)  # 0 and 1 acknowledged; 2..5 not read
    trimmer = Trimmer(opened.context, topic)
    rows = await trimmer.trim_once()
    assert (sum(t.removed for t in rows), trimmer.removed_unacked) == (4, 2)
    assert metrics.TRIMMED.labels(topic, "acked")._value.get() == 2
    assert metrics.TRIMMED.labels(topic, "unacked")._value.get() == 2
    assert [m.body for m in await admin.messages(topic, count=10)] == [4, 5]
