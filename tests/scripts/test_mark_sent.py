"""mark_sent.lua and the MULTI path of large bodies: a chunk appended by plain XADDs in one MULTI
(the bodies never pass through Lua) is recorded so that `send`'s retry finds it, and is never
stored twice."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rmq.keys import QueueKeys
from rmq.scripts import Scripts
from tests.scripts import call, entries, server_ms
from tests.scripts.test_send import SESSION, TTL, msg, send

SOURCE = Scripts()["mark_sent"].source


async def multi_send(client: Redis, q: QueueKeys, *messages: list[Any]) -> list[str]:
    """What `ScriptCalls.send_large` sends: mark_sent, then one XADD per message, in a MULTI."""
    pipe = client.pipeline(transaction=True)
    pipe.eval(SOURCE, 1, q.dedup(SESSION), TTL, messages[0][0])
    for m in messages:
        msg_id, tag, keys, props, flags, body = m
        fields = {"i": msg_id, "t": tag, "k": keys, "p": props, "c": flags, "d": body}
        pipe.xadd(q.stream, fields)  # type: ignore[arg-type]
    replies = await pipe.execute()
    return [str(x) for x in replies[1:]]


async def test_records_the_first_msg_id_and_the_time(client: Redis, q: QueueKeys) -> None:
    before = await server_ms(client)
    at = await call(client, "mark_sent", [q.dedup(SESSION)], [TTL, "M1"])
    assert before <= int(at) <= await server_ms(client)
    assert await client.get(q.dedup(SESSION)) == f"M1 @{at}"
    assert 0 < await client.pttl(q.dedup(SESSION)) <= TTL


async def test_a_retry_of_a_multi_chunk_is_answered_not_stored_again(
    client: Redis, q: QueueKeys
) -> None:
    first = await multi_send(client, q, msg("M1", "a" * 20_000), msg("M2", "b" * 20_000))
    again = await send(client, q, msg("M1", "a" * 20_000), msg("M2", "b" * 20_000), retry=True)
    assert again == first
    assert [e[0] for e in await entries(client, q.stream)] == first


async def test_the_retry_looks_past_other_producers_entries(client: Redis, q: QueueKeys) -> None:
    """Other producers' entries of the same millisecond, before and after the chunk."""
    await send(client, q, msg("OTHER-1"), session="other")
    first = await multi_send(client, q, msg("M1"), msg("M2"), msg("M3"))
    await send(client, q, msg("OTHER-2"), session="other")
    again = await send(client, q, msg("M1"), msg("M2"), msg("M3"), retry=True)
    assert again == first
    assert len(await entries(client, q.stream)) == 5


async def test_a_chunk_that_never_landed_is_stored_by_the_retry(
    client: Redis, q: QueueKeys
) -> None:
    await call(client, "mark_sent", [q.dedup(SESSION)], [TTL, "M1"])  # marked, XADDs lost
    ids = await send(client, q, msg("M1"), msg("M2"), retry=True)
    assert [e[0] for e in await entries(client, q.stream)] == ids


async def test_without_ttl_nothing_is_recorded(client: Redis, q: QueueKeys) -> None:
    await call(client, "mark_sent", [q.dedup(SESSION)], [0, "M1"])
    assert not await client.exists(q.dedup(SESSION))
