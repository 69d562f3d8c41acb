"""rollback.lua: half messages are discarded for good, idempotently, never after a commit."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import SCRIPTS, server_ms
from tests.scripts.halves import GROUP, commit, half, half_state, prepare, rollback, scores


async def test_discards_and_records(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), half("B"), half("C"))
    before = await server_ms(client)
    assert await rollback(client, q, "A", "C", ttl=5_000) == ["ok", 2]
    after = await server_ms(client)
    assert set(await scores(client, q.half)) == set(await scores(client, q.half_group(GROUP)))
    assert set(await scores(client, q.half)) == {"B"}
    assert await client.hkeys(q.half_payload) == ["B"]
    assert await client.hgetall(q.half_done) == {"A": "r", "C": "r"}
    forget = await scores(client, q.half_done_expiry)
    assert all(before + 5_000 <= at <= after + 5_000 for at in forget.values())
    assert not await client.exists(q.stream, q.delay)


async def test_is_idempotent(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"))
    assert await rollback(client, q, "A") == ["ok", 1]
    state = await half_state(client, q)
    assert await rollback(client, q, "A") == ["ok", 0]
    assert await half_state(client, q) == state


async def test_a_committed_message_stops_the_call(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), half("B"))
    await commit(client, q, "A")
    state = await half_state(client, q)
    assert await rollback(client, q, "B", "A") == ["committed", "A"]
    assert await half_state(client, q) == state  # B is still half


async def test_unknown_ids_are_reported_and_fenced(client: Redis, q: QueueKeys) -> None:
    """A prepare that arrives after the rollback (a slow retry) is refused, and so is a commit."""
    assert await rollback(client, q, "LATE") == ["ok", 0, "LATE"]
    assert await prepare(client, q, half("LATE")) == ["rolled_back"]
    assert await commit(client, q, "LATE") == ["rolled_back", "LATE"]
    assert not await client.exists(q.half_payload, q.stream)


async def test_another_groups_message_is_refused(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), group="g1")
    state = await half_state(client, q, "g1")
    assert await rollback(client, q, "A", group="g2") == ["wrong_group", "A", "g1"]
    assert await half_state(client, q, "g1") == state


@pytest.mark.parametrize("args", [["", 1000, "A"], [GROUP, 0, "A"], [GROUP, "x", "A"], [GROUP, 1]])
async def test_bad_arguments_are_refused(client: Redis, q: QueueKeys, args: list[object]) -> None:
    keys = [q.half, q.half_group(GROUP), q.half_payload, q.half_done, q.half_done_expiry]
    await prepare(client, q, half("A"))
    state = await half_state(client, q)
    with pytest.raises(ScriptError, match="rmq: rollback takes"):
        await SCRIPTS.call(client, "rollback", keys, args)
    assert await half_state(client, q) == state
