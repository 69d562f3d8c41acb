"""reap_consumers.lua: delete idle consumers without pending entries, never the caller."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from rmq.keys import QueueKeys
from tests.scripts import add_entries, call, consumers, pending

GROUP = "g"
HOUR = 3_600_000


async def reap(client: Redis, q: QueueKeys, min_idle: int, me: str, group: str = GROUP) -> int:
    result = await call(client, "reap_consumers", [q.stream], [group, min_idle, me])
    assert isinstance(result, int)
    return result


async def make_consumers(client: Redis, q: QueueKeys, *names: str) -> None:
    for name in names:
        await client.xgroup_createconsumer(q.stream, GROUP, name)


@pytest.fixture
async def group(client: Redis, q: QueueKeys) -> list[str]:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    return await add_entries(client, q.stream, 3)


async def test_deletes_idle_consumers_without_pending(
    client: Redis, q: QueueKeys, group: list[str]
) -> None:
    await make_consumers(client, q, "me", "idle-1", "idle-2")
    await client.xreadgroup(GROUP, "busy", {q.stream: ">"}, count=2)
    assert await reap(client, q, 0, "me") == 2
    remaining = await consumers(client, q.stream, GROUP)
    assert set(remaining) == {"me", "busy"}
    assert remaining["busy"]["pending"] == 2
    assert set(await pending(client, q.stream, GROUP)) == set(group[:2])


async def test_never_deletes_the_caller(client: Redis, q: QueueKeys, group: list[str]) -> None:
    await make_consumers(client, q, "me")
    assert await reap(client, q, 0, "me") == 0
    assert set(await consumers(client, q.stream, GROUP)) == {"me"}


async def test_caller_may_be_unknown(client: Redis, q: QueueKeys, group: list[str]) -> None:
    await make_consumers(client, q, "a", "b")
    assert await reap(client, q, 0, "not-a-consumer") == 2
    assert await consumers(client, q.stream, GROUP) == {}


async def test_never_deletes_a_consumer_with_pending(
    client: Redis, q: QueueKeys, group: list[str]
) -> None:
    await client.xreadgroup(GROUP, "busy", {q.stream: ">"}, count=1)
    await client.xclaim(q.stream, GROUP, "busy", 0, [group[0]], idle=10 * HOUR, justid=True)
    assert await reap(client, q, 0, "me") == 0
    assert (await consumers(client, q.stream, GROUP))["busy"]["pending"] == 1


async def test_consumer_becomes_reapable_after_ack(
    client: Redis, q: QueueKeys, group: list[str]
) -> None:
    await client.xreadgroup(GROUP, "worker", {q.stream: ">"}, count=1)
    assert await reap(client, q, 0, "me") == 0
    await client.xack(q.stream, GROUP, group[0])
    assert await reap(client, q, 0, "me") == 1
    assert await consumers(client, q.stream, GROUP) == {}


async def test_recently_active_consumers_are_kept(
    client: Redis, q: QueueKeys, group: list[str]
) -> None:
    await make_consumers(client, q, "a", "b")
    assert await reap(client, q, HOUR, "me") == 0
    assert set(await consumers(client, q.stream, GROUP)) == {"a", "b"}


async def test_only_consumers_idle_at_least_min_idle(
    client: Redis, q: QueueKeys, group: list[str]
) -> None:
    await make_consumers(client, q, "old")
    await anyio.sleep(0.25)
    await make_consumers(client, q, "fresh")
    rows = await consumers(client, q.stream, GROUP)
    assert rows["old"]["idle"] >= 200
    assert rows["fresh"]["idle"] < 200
    assert await reap(client, q, 200, "me") == 1
    assert set(await consumers(client, q.stream, GROUP)) == {"fresh"}


async def test_missing_group_or_stream(client: Redis, q: QueueKeys) -> None:
    assert await reap(client, q, 0, "me") == 0  # no stream
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    assert await reap(client, q, 0, "me", group="nope") == 0  # no group
    assert [g["name"] for g in await client.xinfo_groups(q.stream)] == [GROUP]


async def test_other_groups_untouched(client: Redis, q: QueueKeys, group: list[str]) -> None:
    await client.xgroup_create(q.stream, "other", "0")
    await client.xgroup_createconsumer(q.stream, "other", "x")
    await make_consumers(client, q, "y")
    assert await reap(client, q, 0, "me") == 1
    assert set(await consumers(client, q.stream, "other")) == {"x"}
