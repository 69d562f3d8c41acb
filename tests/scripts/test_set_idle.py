"""set_idle.lua: owner-checked idle reset (or set) of pending entries; delivery count unchanged."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rmq.keys import QueueKeys
from tests.scripts import add_entries, call, consumers, pending, read_ids

GROUP = "g"
LONG_IDLE = 50_000


async def deliver(client: Redis, q: QueueKeys, consumer: str, count: int) -> list[str]:
    """Deliver `count` new entries to `consumer` and make them look idle for LONG_IDLE ms."""
    ids = await read_ids(client, GROUP, consumer, q.stream, count)
    assert len(ids) == count
    await client.xclaim(q.stream, GROUP, consumer, 0, ids, idle=LONG_IDLE, justid=True)
    return ids


@pytest.fixture
async def setup(client: Redis, q: QueueKeys) -> list[str]:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    return await add_entries(client, q.stream, 5)


async def set_idle(client: Redis, q: QueueKeys, me: str, idle: int, *ids: str) -> list[str]:
    result = await call(client, "set_idle", [q.stream], [GROUP, me, idle, *ids])
    assert isinstance(result, list)
    return result


async def test_reset_idle_to_zero(client: Redis, q: QueueKeys, setup: list[str]) -> None:
    mine = await deliver(client, q, "me", 2)
    before = await pending(client, q.stream, GROUP)
    assert all(before[i]["idle"] >= LONG_IDLE for i in mine)
    assert await set_idle(client, q, "me", 0, *mine) == []
    after = await pending(client, q.stream, GROUP)
    for entry_id in mine:
        assert after[entry_id]["consumer"] == "me"
        assert after[entry_id]["idle"] < 1000
        assert after[entry_id]["deliveries"] == 1


async def test_set_idle_to_a_value(client: Redis, q: QueueKeys, setup: list[str]) -> None:
    (entry_id,) = await deliver(client, q, "me", 1)
    await set_idle(client, q, "me", 0, entry_id)
    assert await set_idle(client, q, "me", 120_000, entry_id) == []
    row = (await pending(client, q.stream, GROUP))[entry_id]
    assert 120_000 <= row["idle"] < 121_000
    assert row["consumer"] == "me"
    assert row["deliveries"] == 1


async def test_delivery_count_unchanged(client: Redis, q: QueueKeys, setup: list[str]) -> None:
    (entry_id,) = await deliver(client, q, "me", 1)
    await client.xclaim(q.stream, GROUP, "me", 0, [entry_id], retrycount=4, justid=True)
    for _ in range(3):
        assert await set_idle(client, q, "me", 0, entry_id) == []
    assert (await pending(client, q.stream, GROUP))[entry_id]["deliveries"] == 4


async def test_entries_of_others_are_lost_and_untouched(
    client: Redis, q: QueueKeys, setup: list[str]
) -> None:
    mine = await deliver(client, q, "me", 2)
    theirs = await deliver(client, q, "other", 2)
    lost = await set_idle(client, q, "me", 0, mine[0], theirs[0], mine[1], theirs[1])
    assert lost == [theirs[0], theirs[1]]
    rows = await pending(client, q.stream, GROUP)
    for entry_id in theirs:
        assert rows[entry_id]["consumer"] == "other"
        assert rows[entry_id]["idle"] >= LONG_IDLE
        assert rows[entry_id]["deliveries"] == 1
    for entry_id in mine:
        assert rows[entry_id]["consumer"] == "me"
        assert rows[entry_id]["idle"] < 1000


async def test_acked_and_unknown_entries_are_lost(
    client: Redis, q: QueueKeys, setup: list[str]
) -> None:
    mine = await deliver(client, q, "me", 2)
    await client.xack(q.stream, GROUP, mine[0])
    never_delivered = setup[4]
    lost = await set_idle(client, q, "me", 0, mine[0], mine[1], never_delivered, "1-1")
    assert lost == [mine[0], never_delivered, "1-1"]
    rows = await pending(client, q.stream, GROUP)
    assert set(rows) == {mine[1]}


async def test_unknown_consumer_is_not_created(
    client: Redis, q: QueueKeys, setup: list[str]
) -> None:
    theirs = await deliver(client, q, "other", 1)
    assert await set_idle(client, q, "ghost", 0, *theirs) == theirs
    assert set(await consumers(client, q.stream, GROUP)) == {"other"}


async def test_no_ids(client: Redis, q: QueueKeys, setup: list[str]) -> None:
    await deliver(client, q, "me", 1)
    assert await set_idle(client, q, "me", 0) == []
    assert (await pending(client, q.stream, GROUP)).popitem()[1]["idle"] >= LONG_IDLE


async def test_claimed_away_entry_becomes_lost(
    client: Redis, q: QueueKeys, setup: list[str]
) -> None:
    """The visibility timeout hands an idle entry to another consumer; the old owner loses it."""
    (entry_id,) = await deliver(client, q, "me", 1)
    await client.xautoclaim(q.stream, GROUP, "other", min_idle_time=LONG_IDLE - 1000)
    assert await set_idle(client, q, "me", 0, entry_id) == [entry_id]
    row = (await pending(client, q.stream, GROUP))[entry_id]
    assert row["consumer"] == "other"
    assert row["deliveries"] == 2


async def test_entry_deleted_while_pending_is_reported(
    client: Redis, q: QueueKeys, setup: list[str]
) -> None:
    """A held entry whose payload was trimmed/deleted is no longer pending for us after the call."""
    kept, deleted = await deliver(client, q, "me", 2)
    await client.xdel(q.stream, deleted)
    lost = await set_idle(client, q, "me", 0, kept, deleted)
    rows = await pending(client, q.stream, GROUP)
    assert rows[kept]["idle"] < 1000
    if deleted in rows:  # the server kept it in the PEL: still ours
        assert lost == []
    else:  # XCLAIM dropped it from the PEL (Redis >= 7.0): the caller must hear it is gone
        assert lost == [deleted]
