"""pull_ack.lua: acknowledge received entries (XACK) and drop them from the invisible zset."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rmq.keys import QueueKeys
from tests.scripts import (
    add_entries,
    call,
    group_info,
    invisible,
    pending,
    pull_receive,
)

GROUP = "g"
HIDE = 30_000


@pytest.fixture
async def received(client: Redis, q: QueueKeys) -> list[str]:
    """Three entries received by consumer "me"."""
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    ids = await add_entries(client, q.stream, 3)
    _, _, got = await pull_receive(client, q, GROUP, "me", 3, HIDE)
    assert [g[0] for g in got] == ids
    return ids


async def ack(client: Redis, q: QueueKeys, *ids: str, group: str = GROUP) -> int:
    result = await call(client, "pull_ack", [q.stream, q.invisible(group)], [group, *ids])
    assert isinstance(result, int)
    return result


async def test_ack_removes_from_pel_and_zset(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    assert await ack(client, q, received[0], received[2]) == 2
    assert set(await invisible(client, q, GROUP)) == {received[1]}
    assert set(await pending(client, q.stream, GROUP)) == {received[1]}
    assert (await group_info(client, q.stream, GROUP))["pending"] == 1
    assert await client.xlen(q.stream) == 3  # acknowledging never deletes entries


async def test_second_ack_counts_nothing(client: Redis, q: QueueKeys, received: list[str]) -> None:
    assert await ack(client, q, received[0]) == 1
    assert await ack(client, q, received[0]) == 0
    assert await ack(client, q, received[0], received[1]) == 1
    assert set(await invisible(client, q, GROUP)) == {received[2]}


async def test_unknown_ids_and_no_ids(client: Redis, q: QueueKeys, received: list[str]) -> None:
    assert await ack(client, q) == 0
    assert await ack(client, q, "1-1", "99999999999999-0") == 0
    assert set(await invisible(client, q, GROUP)) == set(received)
    assert len(await pending(client, q.stream, GROUP)) == 3


async def test_acked_entry_is_never_redelivered(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    await ack(client, q, received[0])
    await client.zadd(q.invisible(GROUP), {received[1]: 1})  # received[1] timed out
    _, _, got = await pull_receive(client, q, GROUP, "other", 10, HIDE)
    assert [(g[0], g[2]) for g in got] == [(received[1], 2)]


async def test_ack_after_redelivery_to_another_consumer(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    """An ack is per group: whoever acknowledges first settles the entry."""
    await client.zadd(q.invisible(GROUP), {received[0]: 1})
    await pull_receive(client, q, GROUP, "other", 1, HIDE)
    assert await ack(client, q, received[0]) == 1
    assert received[0] not in await pending(client, q.stream, GROUP)
    assert received[0] not in await invisible(client, q, GROUP)


async def test_other_groups_are_untouched(client: Redis, q: QueueKeys, received: list[str]) -> None:
    await client.xgroup_create(q.stream, "h", "0")
    await pull_receive(client, q, "h", "me", 3, HIDE)
    assert await ack(client, q, *received) == 3
    assert set(await pending(client, q.stream, "h")) == set(received)
    assert set(await invisible(client, q, "h")) == set(received)
    assert await invisible(client, q, GROUP) == {}
