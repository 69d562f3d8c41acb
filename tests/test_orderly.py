"""Orderly consumption against a real Redis: order per queue, one owner per queue, rebalancing,
takeover after a crash, in-place retries, fencing."""

from __future__ import annotations

import time
from collections import defaultdict

import anyio
import pytest
import redis

import rmq
from rmq.consumer.membership import allocate_averagely, allocate_by_circle
from rmq.keys import NamespaceKeys
from tests.helpers import running, wait_until


def orderly_settings(settings: rmq.Settings) -> rmq.Settings:
    return settings.replace(default_queues=8, lease_ttl=1.5, rebalance_interval=0.2)


def test_allocation_strategies() -> None:
    members = ["a", "b", "c"]
    assert [allocate_averagely(8, members, m) for m in members] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [allocate_by_circle(8, members, m) for m in members] == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert allocate_averagely(2, members, "c") == []
    assert allocate_averagely(8, members, "stranger") == []
    shares = [q for m in members for q in allocate_averagely(11, members, m)]
    assert sorted(shares) == list(range(11))


def check_order(log: list[tuple[str, int]]) -> None:
    """Per key, the first handling of each sequence number comes in send order."""
    seen: dict[str, set[int]] = defaultdict(set)
    last: dict[str, int] = {}
    for key, seq in log:
        if seq in seen[key]:
            continue  # a duplicate (at-least-once), not an order violation
        assert seq > last.get(key, -1), f"{key}: {seq} handled after {last[key]}"
        seen[key].add(seq)
        last[key] = seq


async def send_keyed(app: rmq.App, topic: str, keys: int, per_key: int) -> None:
    async def send(key: str, seq: int) -> None:
        await app.send(topic, {"key": key, "seq": seq}, sharding_key=key)

    for seq in range(per_key):
        async with anyio.create_task_group() as tg:
            for k in range(keys):
                tg.start_soon(send, f"k{k}", seq)


async def test_messages_of_a_key_are_handled_in_order(settings: rmq.Settings) -> None:
    app = rmq.App(orderly_settings(settings))
    log: list[tuple[str, int]] = []
    active: dict[int, int] = defaultdict(int)
    overlap: list[int] = []

    @app.consumer("ledger", group="g", mode="orderly")
    async def handle(msg: rmq.Message) -> None:
        active[msg.queue_id] += 1
        if active[msg.queue_id] > 1:
            overlap.append(msg.queue_id)
        await anyio.sleep(0)
        log.append((msg.body["key"], msg.body["seq"]))
        active[msg.queue_id] -= 1

    async with running(app):
        await send_keyed(app, "ledger", keys=20, per_key=15)
        await wait_until(lambda: len(log) == 300, timeout=20)
    check_order(log)
    assert overlap == [], "one message at a time per queue"


async def test_members_share_the_queues_and_take_over(settings: rmq.Settings) -> None:
    settings = orderly_settings(settings)
    apps = [rmq.App(settings) for _ in range(3)]
    handled: list[tuple[str, int, int]] = []

    for index, app in enumerate(apps):

        @app.consumer("share", group="g", mode="orderly")
        async def handle(msg: rmq.Message, index: int = index) -> None:
            handled.append((msg.body["key"], msg.body["seq"], index))

    async with running(apps[0]), running(apps[1]):
        async with running(apps[2]):

            def owned(members: list[rmq.App]) -> list[set[int]]:
                return [set(a.running_consumers[0].owned) for a in members]

            await wait_until(
                lambda: (
                    sorted(q for s in owned(apps) for q in s) == list(range(8))
                    and all(len(s) >= 2 for s in owned(apps))
                ),
                timeout=10,
            )
            await send_keyed(apps[0], "share", keys=16, per_key=5)
            await wait_until(lambda: len(handled) >= 80, timeout=10)
        # member 2 left: its queues move to the two others
        await wait_until(
            lambda: (
                sorted(q for a in apps[:2] for q in a.running_consumers[0].owned) == list(range(8))
            ),
            timeout=10,
        )
        await send_keyed(apps[0], "share", keys=16, per_key=5)
        await wait_until(
            lambda: len({(k, s) for k, s, _ in handled}) == 80 and len(handled) >= 160, timeout=10
        )
    check_order([(k, s) for k, s, _ in handled])
    by_key: dict[str, set[int]] = defaultdict(set)
    for k, _, index in handled[:80]:
        by_key[k].add(index)
    assert all(len(owners) == 1 for owners in by_key.values()), "a key's queue has one owner"


async def test_failures_are_retried_in_place_then_dead_lettered(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    app = rmq.App(orderly_settings(settings).replace(default_queues=1))
    log: list[tuple[int, int]] = []

    @app.consumer("inplace", group="g", mode="orderly", suspend=0.05, max_retries=2)
    async def handle(msg: rmq.Message) -> None:
        log.append((msg.body, msg.reconsume_times))
        if msg.body == 1:
            raise ValueError("never works")
        if msg.body == 2 and msg.reconsume_times == 0:
            raise rmq.Retry(delay=0.05)

    async with running(app):
        await app.send_batch("inplace", [0, 1, 2, 3])
        await wait_until(lambda: [b for b, _ in log][-1:] == [3], timeout=10)
    assert log == [(0, 0), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0)]
    queue = NamespaceKeys(namespace).queue("inplace", 0)
    (dead,) = [f for _, f in r.xrange(queue.dlq("g"))]
    assert dead[b"reason"] == b"max_retries" and dead[b"attempts"] == b"3"
    assert r.xpending(queue.stream, "g")["pending"] == 0


async def test_a_crashed_members_queue_is_taken_over_in_order(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    settings = orderly_settings(settings).replace(default_queues=1)
    app = rmq.App(settings)
    log: list[int] = []

    @app.consumer("takeover", group="g", mode="orderly")
    async def handle(msg: rmq.Message) -> None:
        log.append(msg.body)

    async with app:
        results = await app.send_batch("takeover", list(range(10)))
    queue = NamespaceKeys(namespace).queue("takeover", 0)
    # A member that read 4 entries, held the lease and died.
    r.xreadgroup("g", "dead-member", {queue.stream: ">"}, count=4)
    r.set(queue.lease("g"), "dead-member:token", px=1000)
    started = time.monotonic()
    async with running(app):
        await wait_until(lambda: len(log) == 10, timeout=10)
    assert time.monotonic() - started >= 0.9, "waited for the dead member's lease to expire"
    assert log == list(range(10))
    assert r.xpending(queue.stream, "g")["pending"] == 0
    assert results[0].queue_id == 0


async def test_fenced_member_cannot_acknowledge(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    settings = orderly_settings(settings).replace(default_queues=1)
    app = rmq.App(settings)
    release = anyio.Event()
    seen: list[int] = []

    @app.consumer("fence", group="g", mode="orderly")
    async def handle(msg: rmq.Message) -> None:
        seen.append(msg.body)
        if msg.body == 0:
            await release.wait()

    queue = NamespaceKeys(namespace).queue("fence", 0)
    async with running(app):
        await app.send("fence", 0)
        await wait_until(lambda: seen == [0])
        # someone else now holds the lease (as after a pause past the TTL)
        r.set(queue.lease("g"), "other-member:token", px=60_000)
        await app.send("fence", 1)
        release.set()
        await anyio.sleep(1.0)
        consumer = app.running_consumers[0]
        assert consumer.stats.acked == 0
    assert r.xpending(queue.stream, "g")["pending"] >= 1, "the fenced ack was refused"
    assert seen == [0], "it stopped instead of handling the next message"


def test_orderly_validation(settings: rmq.Settings) -> None:
    app = rmq.App(settings)

    async def handler(msg: rmq.Message) -> None: ...

    with pytest.raises(rmq.ConfigError, match="clustering"):
        app.consumer("t", group="g", mode="orderly", model="broadcasting")(handler)
    with pytest.raises(rmq.ConfigError, match="mode"):
        app.consumer("t", group="g", mode="sideways")(handler)  # type: ignore[arg-type]
