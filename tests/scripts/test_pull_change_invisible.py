"""pull_change_invisible.lua: the owning consumer moves an entry's invisible-until time."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rmq.keys import QueueKeys
from tests.scripts import (
    add_entries,
    call,
    invisible,
    pending,
    pull_receive,
    server_ms,
)

GROUP = "g"
HIDE = 30_000


@pytest.fixture
async def received(client: Redis, q: QueueKeys) -> list[str]:
    """Two entries received by consumer "me"; a third one not received yet."""
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    ids = await add_entries(client, q.stream, 3)
    await pull_receive(client, q, GROUP, "me", 2, HIDE)
    return ids


async def change(client: Redis, q: QueueKeys, me: str, entry_id: str, ms: int) -> int:
    result = await call(
        client, "pull_change_invisible", [q.stream, q.invisible(GROUP)], [GROUP, me, entry_id, ms]
    )
    assert result in (0, 1)
    return int(result)


async def test_owner_extends(client: Redis, q: QueueKeys, received: list[str]) -> None:
    t0 = await server_ms(client)
    assert await change(client, q, "me", received[0], 120_000) == 1
    t1 = await server_ms(client)
    scores = await invisible(client, q, GROUP)
    assert t0 + 120_000 <= scores[received[0]] <= t1 + 120_000
    assert scores[received[1]] <= t1 + HIDE
    row = (await pending(client, q.stream, GROUP))[received[0]]
    assert (row["consumer"], row["deliveries"]) == ("me", 1)


async def test_owner_shortens(client: Redis, q: QueueKeys, received: list[str]) -> None:
    t0 = await server_ms(client)
    assert await change(client, q, "me", received[0], 1000) == 1
    t1 = await server_ms(client)
    assert t0 + 1000 <= (await invisible(client, q, GROUP))[received[0]] <= t1 + 1000


async def test_zero_makes_it_visible_at_once(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    assert await change(client, q, "me", received[1], 0) == 1
    _, _, got = await pull_receive(client, q, GROUP, "other", 1, HIDE)
    assert [(g[0], g[2]) for g in got] == [(received[1], 2)]
    assert (await pending(client, q.stream, GROUP))[received[1]]["consumer"] == "other"


async def test_extended_entry_is_not_redelivered(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    await client.zadd(q.invisible(GROUP), {received[0]: 1})  # its time ran out ...
    assert await change(client, q, "me", received[0], HIDE) == 1  # ... but the owner extends first
    _, _, got = await pull_receive(client, q, GROUP, "other", 5, HIDE)
    assert [g[0] for g in got] == [received[2]]


async def test_other_consumer_cannot_change(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    before = await invisible(client, q, GROUP)
    assert await change(client, q, "other", received[0], 0) == 0
    assert await invisible(client, q, GROUP) == before


async def test_previous_owner_cannot_change_after_redelivery(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    await client.zadd(q.invisible(GROUP), {received[0]: 1})
    await pull_receive(client, q, GROUP, "other", 1, HIDE)
    before = await invisible(client, q, GROUP)
    assert await change(client, q, "me", received[0], 0) == 0
    assert await invisible(client, q, GROUP) == before
    assert await change(client, q, "other", received[0], 0) == 1


async def test_acked_entry_is_not_brought_back(
    client: Redis, q: QueueKeys, received: list[str]
) -> None:
    await call(client, "pull_ack", [q.stream, q.invisible(GROUP)], [GROUP, received[0]])
    assert await change(client, q, "me", received[0], 0) == 0
    assert received[0] not in await invisible(client, q, GROUP)


async def test_not_received_or_unknown(client: Redis, q: QueueKeys, received: list[str]) -> None:
    assert await change(client, q, "me", received[2], 0) == 0
    assert await change(client, q, "me", "1-1", 0) == 0
    assert set(await invisible(client, q, GROUP)) == set(received[:2])
