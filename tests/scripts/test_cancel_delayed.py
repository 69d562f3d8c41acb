"""cancel_delayed.lua: a waiting delayed message's zset member and payload go together."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rmq.keys import QueueKeys
from tests.scripts import call, queue_keys, server_ms

CHANNEL = "wake"


async def schedule(client: Redis, q: QueueKeys, msg_id: str, after_ms: int) -> list[Any]:
    """One message through schedule.lua (no record), as the producer stores it."""
    keys = [q.stream, q.delay, q.delay_payload, q.dedup("s:d")]
    args = [0, "0", CHANNEL, "after", after_ms, msg_id, "", "", "", "0", f"body of {msg_id}"]
    reply = await call(client, "schedule", keys, args)
    assert isinstance(reply, list)
    return reply


async def cancel(client: Redis, q: QueueKeys, msg_id: str) -> int:
    return int(await call(client, "cancel_delayed", [q.delay, q.delay_payload], [msg_id]))


async def test_removes_member_and_payload(client: Redis, q: QueueKeys) -> None:
    await schedule(client, q, "A", 60_000)
    await schedule(client, q, "B", 30_000)
    assert await cancel(client, q, "A") == 1
    assert await client.zrange(q.delay, 0, -1) == ["B"]
    assert await client.hkeys(q.delay_payload) == ["B"]
    assert not await client.exists(q.stream)


async def test_last_one_leaves_no_keys(client: Redis, q: QueueKeys) -> None:
    await schedule(client, q, "A", 60_000)
    assert await cancel(client, q, "A") == 1
    assert not await client.exists(q.delay)
    assert not await client.exists(q.delay_payload)


async def test_second_cancel_returns_0(client: Redis, q: QueueKeys) -> None:
    await schedule(client, q, "A", 60_000)
    assert await cancel(client, q, "A") == 1
    assert await cancel(client, q, "A") == 0


async def test_never_scheduled_returns_0(client: Redis, q: QueueKeys) -> None:
    assert await cancel(client, q, "NOPE") == 0
    await schedule(client, q, "A", 60_000)
    assert await cancel(client, q, "NOPE") == 0
    assert await client.zrange(q.delay, 0, -1) == ["A"]
    assert await client.hkeys(q.delay_payload) == ["A"]


async def test_delivered_at_once_returns_0(client: Redis, q: QueueKeys) -> None:
    (entry_id, _) = await schedule(client, q, "A", 0)
    assert entry_id  # due already: it went to the stream
    assert await cancel(client, q, "A") == 0
    assert await client.xlen(q.stream) == 1


async def test_promoted_returns_0(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    await client.zadd(q.delay, {"A": now - 1})
    await client.eval(
        "redis.call('HSET', KEYS[1], 'A', cmsgpack.pack({'i', 'A', 'd', 'x'}))", 1, q.delay_payload
    )
    assert await call(client, "promote", [q.delay, q.delay_payload, q.stream], [10]) == [1, -1]
    assert await cancel(client, q, "A") == 0
    assert await client.xlen(q.stream) == 1


async def test_member_without_payload_is_removed(client: Redis, q: QueueKeys) -> None:
    await client.zadd(q.delay, {"A": 1})
    assert await cancel(client, q, "A") == 1
    assert not await client.exists(q.delay)


async def test_payload_without_member_returns_0_and_stays(client: Redis, q: QueueKeys) -> None:
    """Only the zset says a message is waiting: a stray payload is not a cancel."""
    await client.hset(q.delay_payload, "A", "x")
    assert await cancel(client, q, "A") == 0
    assert await client.hkeys(q.delay_payload) == ["A"]


async def test_other_queue_returns_0(client: Redis, namespace: str) -> None:
    q0, q1 = queue_keys(namespace, "t", 0), queue_keys(namespace, "t", 1)
    await schedule(client, q0, "A", 60_000)
    assert await cancel(client, q1, "A") == 0
    assert await client.zrange(q0.delay, 0, -1) == ["A"]
    assert await client.hkeys(q0.delay_payload) == ["A"]
