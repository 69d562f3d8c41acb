"""trim.lua: retention never removes what a group has not acknowledged, unless a hard cap does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import call, pending, read_ids

HOUR = 3_600_000


async def trim(
    client: Redis,
    q: QueueKeys,
    groups: Sequence[str] = (),
    *,
    retention: int = HOUR,
    max_len: int = 0,
    max_age: int = 0,
    budget: int = 10_000,
    dry: bool = False,
    count_kept: int = 0,
) -> list[list[Any]]:
    keys = [q.stream]
    for g in groups:
        keys += [q.retry_stream(g), q.broadcast_offsets(g)]
    args = [retention, max_len, max_age, budget, int(dry), count_kept, *groups]
    rows = await call(client, "trim", keys, args)
    assert isinstance(rows, list)
    return rows


async def old(client: Redis, key: str, count: int, start_ms: int = 1000) -> list[str]:
    """`count` entries stored long ago (ids <ms>-0, one ms apart)."""
    return [
        str(await client.xadd(key, {"n": str(n)}, id=f"{start_ms + n}-0")) for n in range(count)
    ]


async def ids_of(client: Redis, key: str) -> list[str]:
    return [str(entry_id) for entry_id, _ in await client.xrange(key)]


async def ack(client: Redis, key: str, group: str, ids: Sequence[str]) -> None:
    if ids:
        await client.xack(key, group, *ids)


async def test_acknowledged_old_entries_go_young_ones_stay(client: Redis, q: QueueKeys) -> None:
    stale = await old(client, q.stream, 5)
    await client.xgroup_create(q.stream, "g", "0")
    fresh = str(await client.xadd(q.stream, {"n": "new"}))
    delivered = await read_ids(client, "g", "c", q.stream, 10)
    await ack(client, q.stream, "g", delivered)
    (row,) = await trim(client, q)
    assert (row[0], row[1], row[4], row[5]) == (5, 0, "retention", 0)
    assert await ids_of(client, q.stream) == [fresh]
    assert len(stale) == 5


async def test_undelivered_and_pending_entries_are_kept(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 6)
    await client.xgroup_create(q.stream, "g", "0")
    delivered = await read_ids(client, "g", "c", q.stream, 4)  # 4 delivered, 2 undelivered
    await ack(client, q.stream, "g", [delivered[0], delivered[1], delivered[3]])  # [2] pending
    (row,) = await trim(client, q, retention=0, count_kept=100)
    assert row[:2] == [2, 0]
    assert (row[3], row[4]) == (ids[2], "group g")
    assert row[2] == 4  # older than the retention but kept
    assert await ids_of(client, q.stream) == ids[2:]
    assert list(await pending(client, q.stream, "g")) == [ids[2]]


async def test_the_slowest_group_holds_trimming_back(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 6)
    await client.xgroup_create(q.stream, "fast", "0")
    await client.xgroup_create(q.stream, "slow", "0")
    await ack(client, q.stream, "fast", await read_ids(client, "fast", "c", q.stream, 10))
    await ack(client, q.stream, "slow", await read_ids(client, "slow", "c", q.stream, 3))
    (row,) = await trim(client, q, retention=0)
    assert (row[0], row[4]) == (3, "group slow")
    assert await ids_of(client, q.stream) == ids[3:]
    await ack(client, q.stream, "slow", await read_ids(client, "slow", "c", q.stream, 10))
    (row,) = await trim(client, q, retention=0)
    assert row[0] == 3
    assert await ids_of(client, q.stream) == []


async def test_group_positioned_at_a_time_trims_up_to_it(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 4)
    # what declare_group does for start=<epoch ms>: everything before 1002 is skipped
    await client.xgroup_create(q.stream, "g", "1001-18446744073709551615")
    (row,) = await trim(client, q, retention=0)
    assert (row[0], row[3]) == (2, "1002-0")
    assert await ids_of(client, q.stream) == ids[2:]


async def test_broadcasting_offsets_hold_trimming_back(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 5)
    await client.hset(
        q.broadcast_offsets("b"), mapping={"host:app:0": ids[3], "host:app:1": ids[1]}
    )
    rows = await trim(client, q, ["b"], retention=0)
    assert rows[0][:2] == [2, 0]
    assert rows[0][4] == "broadcast b"
    assert rows[1] == [0, 0, 0, "", "", 0]  # no retry stream
    assert await ids_of(client, q.stream) == ids[2:]
    await client.hset(q.broadcast_offsets("b"), "host:app:1", ids[4])
    assert (await trim(client, q, ["b"], retention=0))[0][0] == 2
    assert await ids_of(client, q.stream) == [ids[4]]


async def test_no_groups_trims_by_time_only(client: Redis, q: QueueKeys) -> None:
    await old(client, q.stream, 3)
    fresh = str(await client.xadd(q.stream, {"n": "new"}))
    (row,) = await trim(client, q)
    assert (row[0], row[4]) == (3, "retention")
    assert await ids_of(client, q.stream) == [fresh]


async def test_retry_streams_are_trimmed_below_their_group(client: Redis, q: QueueKeys) -> None:
    main = await old(client, q.stream, 2)
    await client.xgroup_create(q.stream, "g", "0")
    await ack(client, q.stream, "g", await read_ids(client, "g", "c", q.stream, 10))
    rs = q.retry_stream("g")
    retries = await old(client, rs, 4)
    await client.xgroup_create(rs, "g", "0")
    delivered = await read_ids(client, "g", "c", rs, 2)
    await ack(client, rs, "g", delivered[:1])
    rows = await trim(client, q, ["g"], retention=0)
    assert rows[0][0] == 2 and await ids_of(client, q.stream) == []
    assert rows[1][:2] == [1, 0]
    assert rows[1][4] == "group g"
    assert await ids_of(client, rs) == retries[1:]
    assert main


async def test_retry_stream_without_its_group_is_left_alone(client: Redis, q: QueueKeys) -> None:
    rs = q.retry_stream("g")
    retries = await old(client, rs, 3)
    rows = await trim(client, q, ["g"], retention=0)
    assert rows[1][0] == 0
    assert await ids_of(client, rs) == retries


async def test_max_len_cap_counts_unacknowledged(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 10)
    await client.xgroup_create(q.stream, "g", "0")
    delivered = await read_ids(client, "g", "c", q.stream, 6)  # 7.. undelivered
    await ack(client, q.stream, "g", [delivered[0], delivered[2]])  # 1, 3, 4, 5 pending
    (row,) = await trim(client, q, retention=0, max_len=3)
    # retention alone removes ids[0]; the cap removes 6 more: 1, 3, 4, 5 pending, 6 undelivered
    assert row[:2] == [7, 5]
    assert (row[3], row[4]) == (ids[7], "cap")
    assert await ids_of(client, q.stream) == ids[7:]


async def test_max_age_cap(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 3)
    fresh = str(await client.xadd(q.stream, {"n": "new"}))
    await client.xgroup_create(q.stream, "g", "0")  # nothing delivered
    (row,) = await trim(client, q, max_age=HOUR)
    assert row[:2] == [3, 3]
    assert await ids_of(client, q.stream) == [fresh]
    assert ids


async def test_cap_over_everything_empties_the_stream(client: Redis, q: QueueKeys) -> None:
    await old(client, q.stream, 4)
    (row,) = await trim(client, q, max_age=1)
    assert row[:2] == [4, 0]  # no group: nobody left unacknowledged
    assert await client.xlen(q.stream) == 0


async def test_dry_run_counts_and_removes_nothing(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 6)
    await client.xgroup_create(q.stream, "g", "0")
    await ack(client, q.stream, "g", (await read_ids(client, "g", "c", q.stream, 4))[:2])
    (row,) = await trim(client, q, retention=0, max_len=2, dry=True)
    assert row[:2] == [4, 2]
    assert await ids_of(client, q.stream) == ids
    (row,) = await trim(client, q, retention=0, dry=True)
    assert row == [2, 0, 0, ids[2], "group g", 0]


async def test_budget_stops_and_the_next_call_continues(client: Redis, q: QueueKeys) -> None:
    await old(client, q.stream, 250)
    total = 0
    calls = 0
    while True:
        (row,) = await trim(client, q, retention=0, budget=120)
        total += row[0]
        calls += 1
        assert row[0] <= 120
        if not row[5]:
            break
    assert total == 250 and calls > 1
    assert await client.xlen(q.stream) == 0


async def test_cap_budget(client: Redis, q: QueueKeys) -> None:
    ids = await old(client, q.stream, 7)
    await client.xgroup_create(q.stream, "g", "0")
    (row,) = await trim(client, q, max_len=1, budget=4)
    assert (row[0], row[1], row[5]) == (4, 4, 1)
    (row,) = await trim(client, q, max_len=1, budget=4)
    assert (row[0], row[1], row[5]) == (2, 2, 0)
    assert await ids_of(client, q.stream) == ids[6:]


async def test_missing_stream_and_bad_arguments(client: Redis, q: QueueKeys) -> None:
    assert await trim(client, q) == [[0, 0, 0, "", "", 0]]
    with pytest.raises(ScriptError):
        await call(client, "trim", [q.stream], [1, 0, 0, 0, 0, 0])
    with pytest.raises(ScriptError):
        await call(client, "trim", [q.stream, q.retry_stream("g")], [1, 0, 0, 10, 0, 0, "g"])
