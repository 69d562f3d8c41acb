"""pull_receive.lua: new entries with invisible-until scores, redelivery of expired ones, losses."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import (
    add_entries,
    call,
    group_info,
    invisible,
    pending,
    pull_receive,
    server_ms,
)

GROUP = "g"
HIDE = 30_000


@pytest.fixture
async def entries(client: Redis, q: QueueKeys) -> list[str]:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    return await add_entries(client, q.stream, 5)


async def expire(client: Redis, q: QueueKeys, *ids: str) -> None:
    """Make received entries' invisible time run out (as if HIDE ms had passed)."""
    await client.zadd(q.invisible(GROUP), dict.fromkeys(ids, 1))


async def test_empty_stream(client: Redis, q: QueueKeys) -> None:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    assert await pull_receive(client, q, GROUP, "me", 10, HIDE) == (0, "", [])
    assert not await client.exists(q.invisible(GROUP))


async def test_receive_new_entries(client: Redis, q: QueueKeys, entries: list[str]) -> None:
    t0 = await server_ms(client)
    lost, last, got = await pull_receive(client, q, GROUP, "me", 2, HIDE)
    t1 = await server_ms(client)
    assert lost == 0
    assert last == entries[-1]  # the newest id of the stream, received or not
    assert got == [(entries[0], {"n": "0"}, 1), (entries[1], {"n": "1"}, 1)]
    scores = await invisible(client, q, GROUP)
    assert set(scores) == set(entries[:2])
    assert all(t0 + HIDE <= s <= t1 + HIDE for s in scores.values())
    rows = await pending(client, q.stream, GROUP)
    assert set(rows) == set(entries[:2])
    assert all(r["consumer"] == "me" and r["deliveries"] == 1 for r in rows.values())
    info = await group_info(client, q.stream, GROUP)
    assert (info["last-delivered-id"], info["pending"]) == (entries[1], 2)


async def test_fields_keep_their_order(client: Redis, q: QueueKeys) -> None:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    fields = {"i": "M", "t": "tag", "k": "a b", "p": "", "c": "1", "d": "hello"}
    await client.xadd(q.stream, fields)  # type: ignore[arg-type]
    _, _, [(_, got, _)] = await pull_receive(client, q, GROUP, "me", 1, HIDE)
    assert list(got.items()) == list(fields.items())


async def test_invisible_entries_are_not_redelivered_early(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 2, HIDE)
    _, _, got = await pull_receive(client, q, GROUP, "other", 10, HIDE)
    assert [g[0] for g in got] == entries[2:]
    assert await pull_receive(client, q, GROUP, "third", 10, HIDE) == (0, entries[-1], [])
    assert len(await invisible(client, q, GROUP)) == 5


async def test_expired_entries_are_redelivered(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 2, HIDE)
    await expire(client, q, entries[0])
    t0 = await server_ms(client)
    lost, _, got = await pull_receive(client, q, GROUP, "other", 1, HIDE)
    t1 = await server_ms(client)
    assert lost == 0
    assert got == [(entries[0], {"n": "0"}, 2)]
    rows = await pending(client, q.stream, GROUP)
    assert rows[entries[0]]["consumer"] == "other"
    assert rows[entries[0]]["deliveries"] == 2
    assert rows[entries[0]]["idle"] < 1000
    assert rows[entries[1]]["consumer"] == "me"
    assert t0 + HIDE <= (await invisible(client, q, GROUP))[entries[0]] <= t1 + HIDE


async def test_redelivery_after_real_time_passes(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 1, 300)
    assert (await pull_receive(client, q, GROUP, "other", 1, HIDE))[2][0][0] == entries[1]
    await anyio.sleep(0.35)
    _, _, got = await pull_receive(client, q, GROUP, "other", 1, HIDE)
    assert got == [(entries[0], {"n": "0"}, 2)]


async def test_zero_invisible_time_is_due_at_once(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 1, 0)
    _, _, got = await pull_receive(client, q, GROUP, "me", 1, 0)
    assert got == [(entries[0], {"n": "0"}, 2)]
    _, _, got = await pull_receive(client, q, GROUP, "me", 1, 0)
    assert got[0][2] == 3
    assert (await pending(client, q.stream, GROUP))[entries[0]]["deliveries"] == 3


async def test_due_entries_come_first_and_count_toward_the_limit(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 3, HIDE)
    await expire(client, q, *entries[:3])
    _, _, got = await pull_receive(client, q, GROUP, "other", 4, HIDE)
    assert [(g[0], g[2]) for g in got] == [
        (entries[0], 2),
        (entries[1], 2),
        (entries[2], 2),
        (entries[3], 1),
    ]


async def test_more_due_than_the_limit(client: Redis, q: QueueKeys, entries: list[str]) -> None:
    await pull_receive(client, q, GROUP, "me", 5, HIDE)
    await client.zadd(q.invisible(GROUP), {entries[3]: 1, entries[1]: 2, entries[4]: 3})
    _, _, got = await pull_receive(client, q, GROUP, "other", 2, HIDE)
    assert [g[0] for g in got] == [entries[3], entries[1]]  # earliest invisible-until first
    rows = await pending(client, q.stream, GROUP)
    assert rows[entries[4]]["consumer"] == "me"
    assert rows[entries[4]]["deliveries"] == 1


async def test_acknowledged_due_entry_is_dropped(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 1, HIDE)
    await client.xack(q.stream, GROUP, entries[0])  # acked without pull_ack: zset still has it
    await expire(client, q, entries[0])
    lost, _, got = await pull_receive(client, q, GROUP, "other", 1, HIDE)
    assert lost == 0
    assert got == [(entries[1], {"n": "1"}, 1)]
    assert entries[0] not in await invisible(client, q, GROUP)


async def test_trimmed_pending_entries_are_counted_as_lost(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 3, HIDE)
    await client.xdel(q.stream, entries[0], entries[2])
    await expire(client, q, *entries[:3])
    lost, last, got = await pull_receive(client, q, GROUP, "other", 10, HIDE)
    assert lost == 2
    assert last == entries[-1]
    assert [(g[0], g[2]) for g in got] == [(entries[1], 2), (entries[3], 1), (entries[4], 1)]
    assert set(await invisible(client, q, GROUP)) == set(entries[1:2] + entries[3:])
    assert set(await pending(client, q.stream, GROUP)) == set(entries[1:2] + entries[3:])


async def test_trimmed_head_is_lost_too(client: Redis, q: QueueKeys, entries: list[str]) -> None:
    await pull_receive(client, q, GROUP, "me", 2, 0)
    await client.xtrim(q.stream, maxlen=3, approximate=False)
    lost, _, got = await pull_receive(client, q, GROUP, "me", 10, HIDE)
    assert lost == 2
    assert [g[0] for g in got] == entries[2:]
    assert (await group_info(client, q.stream, GROUP))["pending"] == 3


async def test_last_id_reported_when_nothing_is_received(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await pull_receive(client, q, GROUP, "me", 5, HIDE)
    assert await pull_receive(client, q, GROUP, "me", 5, HIDE) == (0, entries[-1], [])


async def test_groups_have_their_own_invisible_sets(
    client: Redis, q: QueueKeys, entries: list[str]
) -> None:
    await client.xgroup_create(q.stream, "h", "0")
    await pull_receive(client, q, GROUP, "me", 5, HIDE)
    _, _, got = await pull_receive(client, q, "h", "me", 5, HIDE)
    assert [g[0] for g in got] == entries
    assert set(await invisible(client, q, "h")) == set(entries)


async def test_missing_group_is_an_error(client: Redis, q: QueueKeys) -> None:
    await add_entries(client, q.stream, 1)
    with pytest.raises(ScriptError, match="NOGROUP"):
        await call(client, "pull_receive", [q.stream, q.invisible(GROUP)], [GROUP, "me", 1, HIDE])
    assert not await client.exists(q.invisible(GROUP))
