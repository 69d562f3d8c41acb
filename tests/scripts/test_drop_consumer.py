"""drop_consumer.lua: a leaving consumer deletes itself only when it owns no pending entry."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rmq.keys import QueueKeys
from tests.scripts import add_entries, call, consumers, pending

GROUP = "g"


async def drop(client: Redis, q: QueueKeys, name: str, group: str = GROUP) -> int:
    result = await call(client, "drop_consumer", [q.stream], [group, name])
    assert isinstance(result, int)
    return result


@pytest.fixture
async def group(client: Redis, q: QueueKeys) -> list[str]:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    return await add_entries(client, q.stream, 3)


async def test_deletes_an_empty_consumer_only(
    client: Redis, q: QueueKeys, group: list[str]
) -> None:
    await client.xgroup_createconsumer(q.stream, GROUP, "me")
    await client.xgroup_createconsumer(q.stream, GROUP, "other")
    assert await drop(client, q, "me") == 1
    assert set(await consumers(client, q.stream, GROUP)) == {"other"}
    assert await drop(client, q, "me") == 0  # gone already


async def test_keeps_a_consumer_that_owns_pending_entries(
    client: Redis, q: QueueKeys, group: list[str]
) -> None:
    await client.xreadgroup(GROUP, "me", {q.stream: ">"}, count=2)
    assert await drop(client, q, "me") == 0
    assert (await consumers(client, q.stream, GROUP))["me"]["pending"] == 2
    assert set(await pending(client, q.stream, GROUP)) == set(group[:2])
    await client.xack(q.stream, GROUP, *group[:2])
    assert await drop(client, q, "me") == 1


async def test_missing_stream_or_group(client: Redis, q: QueueKeys) -> None:
    assert await drop(client, q, "me") == 0
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    assert await drop(client, q, "me", group="nope") == 0
