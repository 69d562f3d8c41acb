"""promote.lua: due members of a schedule move, in due order and bounded, into their stream."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import call, connect, entries, server_ms

GROUP = "g"
# A script may round the server's clock by a ms: waits are compared within this slack.
SLACK = 5
FIELD_NAMES = ["i", "t", "k", "p", "c", "d"]

# Packs ARGV[3..] as the payload of member ARGV[1] due at ARGV[2]; a value "#<n>" is packed as the
# number n (the retry script packs r and f as numbers).
_STORE = """
local f = {}
for i = 3, #ARGV do
  local v = ARGV[i]
  if string.sub(v, 1, 1) == '#' then v = tonumber(string.sub(v, 2)) end
  f[#f + 1] = v
end
redis.call('HSET', KEYS[2], ARGV[1], cmsgpack.pack(f))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
"""

# ARGV[1] members M1..Mn due at ARGV[2] + i, with six fields each (body = i).
_STORE_MANY = """
for i = 1, tonumber(ARGV[1]) do
  local id = 'M' .. i
  redis.call('HSET', KEYS[2], id, cmsgpack.pack({'i', id, 't', '', 'k', '', 'p', '', 'c', '2',
    'd', tostring(i)}))
  redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + i, id)
end
"""


def fields_of(msg_id: str, body: str = "body") -> list[str]:
    return ["i", msg_id, "t", "", "k", "", "p", "", "c", "0", "d", body]


async def store(
    client: Redis, q: QueueKeys, member: str, due: int, fields: list[str] | None = None
) -> None:
    """A delayed message as schedule.lua stores it (or only its zset member, `fields=[]`)."""
    if fields == []:
        await client.zadd(q.delay, {member: due})
        return
    packed = fields_of(member) if fields is None else fields
    await client.eval(_STORE, 2, q.delay, q.delay_payload, member, due, *packed)


async def promote(
    client: Redis, zset: str, payload: str, stream: str, limit: int | str = 100
) -> list[int]:
    reply = await call(client, "promote", [zset, payload, stream], [limit])
    assert isinstance(reply, list)
    return [int(x) for x in reply]


async def promote_delay(client: Redis, q: QueueKeys, limit: int | str = 100) -> list[int]:
    return await promote(client, q.delay, q.delay_payload, q.stream, limit)


async def scheduled(client: Redis, zset: str) -> list[Any]:
    return list(await client.zrange(zset, 0, -1))


async def test_moves_only_due_members_in_due_order(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    await store(client, q, "A", now - 3_000, fields_of("A", "a"))
    await store(client, q, "B", now - 1_000, fields_of("B", "b"))
    await store(client, q, "C", now - 2_000, fields_of("C", "c"))
    await store(client, q, "LATER", now + 60_000)
    moved, wait = await promote_delay(client, q)
    after = await server_ms(client)
    assert moved == 3
    assert now + 60_000 - after - SLACK <= wait <= 60_000
    stored = await entries(client, q.stream)
    assert [(e[1]["i"], e[1]["d"]) for e in stored] == [("A", "a"), ("C", "c"), ("B", "b")]
    assert all(list(e[1]) == FIELD_NAMES for e in stored)
    assert stored[0][1] == dict(zip(FIELD_NAMES, fields_of("A", "a")[1::2], strict=True))
    assert await scheduled(client, q.delay) == ["LATER"]
    assert await client.hkeys(q.delay_payload) == ["LATER"]


async def test_nothing_due_moves_nothing(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    await store(client, q, "A", now + 30_000)
    moved, wait = await promote_delay(client, q)
    assert moved == 0
    assert 30_000 - 1_000 <= wait <= 30_000
    assert not await client.exists(q.stream)
    assert await scheduled(client, q.delay) == ["A"]
    assert await client.hkeys(q.delay_payload) == ["A"]


async def test_empty_schedule(client: Redis, q: QueueKeys) -> None:
    assert await promote_delay(client, q) == [0, -1]
    assert not await client.exists(q.stream)


async def test_bounded_by_the_limit(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    for n in range(5):
        await store(client, q, f"M{n}", now - 1_000 + n)
    assert await promote_delay(client, q, 2) == [2, 0]  # more are due now
    assert [e[1]["i"] for e in await entries(client, q.stream)] == ["M0", "M1"]
    assert await scheduled(client, q.delay) == ["M2", "M3", "M4"]
    assert await promote_delay(client, q, 2) == [2, 0]
    assert await promote_delay(client, q, 2) == [1, -1]
    assert [e[1]["i"] for e in await entries(client, q.stream)] == [f"M{n}" for n in range(5)]
    assert not await client.exists(q.delay)
    assert not await client.exists(q.delay_payload)


async def test_limit_reached_with_only_future_ones_left(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    await store(client, q, "A", now - 10)
    await store(client, q, "B", now + 20_000)
    moved, wait = await promote_delay(client, q, 1)
    assert moved == 1
    assert 20_000 - 1_000 <= wait <= 20_000


async def test_member_without_payload_is_dropped_without_writing(
    client: Redis, q: QueueKeys
) -> None:
    now = await server_ms(client)
    await store(client, q, "GONE", now - 2_000, [])
    await store(client, q, "OK", now - 1_000)
    assert await promote_delay(client, q) == [1, -1]
    assert [e[1]["i"] for e in await entries(client, q.stream)] == ["OK"]
    assert not await client.exists(q.delay)
    assert not await client.exists(q.delay_payload)


async def test_only_missing_payloads_write_nothing(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    await store(client, q, "GONE", now - 2_000, [])
    assert await promote_delay(client, q) == [0, -1]
    assert not await client.exists(q.stream)
    assert not await client.exists(q.delay)


async def test_payload_of_a_future_member_is_left_alone(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    await store(client, q, "A", now + 60_000, fields_of("A", "kept"))
    await promote_delay(client, q)
    moved = await client.eval(
        "return cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1]))", 1, q.delay_payload, "A"
    )
    assert list(moved) == fields_of("A", "kept")


async def test_binary_body_is_written_exactly(redis_url: str, q: QueueKeys) -> None:
    body = bytes(range(256)) * 4
    async with connect(redis_url, decode=False) as raw:
        now = await server_ms(raw)
        await store(raw, q, "B", now - 1, ["i", "B", "t", "", "k", "", "p", "", "c", "0", "d"])
        # the body as the last packed value: bytes go through EVAL untouched
        await raw.eval(
            "local f = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'B')) f[#f + 1] = ARGV[1] "
            "redis.call('HSET', KEYS[1], 'B', cmsgpack.pack(f))",
            1,
            q.delay_payload,
            body,
        )
        assert await promote_delay(raw, q) == [1, -1]
        ((_, fields),) = await entries(raw, q.stream)
    assert fields[b"d"] == body
    assert list(fields) == [n.encode() for n in FIELD_NAMES]


async def test_retry_copies_keep_r_o_f(client: Redis, q: QueueKeys) -> None:
    """Retries promote into the group's retry stream; r and f are packed as numbers."""
    now = await server_ms(client)
    first_failure = now - 5_000
    retry_fields = [*fields_of("M1", "x"), "r", "#2", "o", "1700000000000-7", "f"]
    retry_fields.append(f"#{first_failure}")
    zset, payload, target = q.retry(GROUP), q.retry_payload(GROUP), q.retry_stream(GROUP)
    await client.eval(_STORE, 2, zset, payload, "M1", now - 1, *retry_fields)
    assert await promote(client, zset, payload, target) == [1, -1]
    ((_, fields),) = await entries(client, target)
    assert list(fields.items()) == [
        ("i", "M1"),
        ("t", ""),
        ("k", ""),
        ("p", ""),
        ("c", "0"),
        ("d", "x"),
        ("r", "2"),
        ("o", "1700000000000-7"),
        ("f", str(first_failure)),
    ]
    assert not await client.exists(q.stream)
    assert not await client.exists(zset)
    assert not await client.exists(payload)


async def test_schedules_are_independent(client: Redis, q: QueueKeys) -> None:
    now = await server_ms(client)
    await store(client, q, "D", now - 1)
    await client.eval(_STORE, 2, q.retry(GROUP), q.retry_payload(GROUP), "R", now - 1, "d", "r")
    assert await promote_delay(client, q) == [1, -1]
    assert await scheduled(client, q.retry(GROUP)) == ["R"]
    assert not await client.exists(q.retry_stream(GROUP))


async def test_concurrent_promoters_move_each_member_once(redis_url: str, q: QueueKeys) -> None:
    """Many promoters on their own connections drain one large due set: each member lands once,
    and the stream keeps the due order (every call takes the soonest members atomically)."""
    count, promoters, limit = 3_000, 8, 7
    async with connect(redis_url) as setup:
        now = await server_ms(setup)
        await setup.eval(_STORE_MANY, 2, q.delay, q.delay_payload, count, now - 10 * count)
        assert await setup.zcard(q.delay) == count
    moved_by: list[int] = [0] * promoters
    calls_by: list[int] = [0] * promoters

    async def run(n: int) -> None:
        async with connect(redis_url) as c:
            while True:
                moved, wait = await promote_delay(c, q, limit)
                calls_by[n] += 1
                moved_by[n] += moved
                assert moved <= limit
                if moved == 0:
                    assert wait == -1
                    return

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(promoters):
                tg.start_soon(run, n)
    assert sum(moved_by) == count
    assert sum(1 for m in moved_by if m) > 1, moved_by  # they did run side by side
    async with connect(redis_url) as check:
        stored = await entries(check, q.stream)
        assert not await check.exists(q.delay)
        assert not await check.exists(q.delay_payload)
    ids = [e[1]["i"] for e in stored]
    assert len(ids) == len(set(ids)) == count
    assert ids == [f"M{i}" for i in range(1, count + 1)]
    assert [e[1]["d"] for e in stored] == [str(i) for i in range(1, count + 1)]


@pytest.mark.parametrize("limit", [0, -1, "many", ""])
async def test_bad_limit_moves_nothing(client: Redis, q: QueueKeys, limit: Any) -> None:
    now = await server_ms(client)
    await store(client, q, "A", now - 1)
    with pytest.raises(ScriptError):
        await promote_delay(client, q, limit)
    assert not await client.exists(q.stream)
    assert await scheduled(client, q.delay) == ["A"]
