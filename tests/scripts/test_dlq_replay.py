"""dlq_replay.lua: one dead letter back to the group's retry stream or to the queue, atomically."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import call, connect, entries, pending

GROUP = "g"
OFFSET = "1700000000000-3"
META = {
    "reason": "max_retries",
    "error": "ValueError: boom",
    "attempts": "3",
    "first_failure_ms": "1700000000100",
    "last_failure_ms": "1700000000900",
    "topic": "orders",
    "queue": "0",
    "offset": OFFSET,
    "group": GROUP,
}
ORIGINAL = {"i": "M1", "t": "paid", "k": "k1", "p": '{"r":"eu"}', "c": "2", "d": '{"a":1}'}
RETRY_COPY = {**ORIGINAL, "r": "2", "o": "1700000000000-1", "f": "1700000000100"}


def prefixed(fields: dict[str, str]) -> dict[str, str]:
    return {f"o:{k}": v for k, v in fields.items()}


async def letter(
    client: Redis, q: QueueKeys, original: dict[str, str] | None, **meta: str | None
) -> str:
    """A dead letter as dead_letter.lua writes it: metadata, then the original fields with "o:"."""
    fields = {k: v for k, v in {**META, **meta}.items() if v is not None}
    if original is None:
        fields["lost"] = "1"
    else:
        fields.update(prefixed(original))
    return str(await client.xadd(q.dlq(GROUP), fields))  # type: ignore[arg-type]


async def replay(client: Redis, q: QueueKeys, dead_id: str, mode: str, target: str) -> Any:
    return await call(client, "dlq_replay", [q.dlq(GROUP), target], [dead_id, mode])


# ---------------------------------------------------------------------- to the group


async def test_group_keeps_origin_and_drops_r_and_f(client: Redis, q: QueueKeys) -> None:
    dead_id = await letter(client, q, RETRY_COPY)
    rs = q.retry_stream(GROUP)
    new_id = await replay(client, q, dead_id, "group", rs)
    assert isinstance(new_id, str)
    ((got_id, fields),) = await entries(client, rs)
    assert got_id == new_id
    assert list(fields.items()) == [*ORIGINAL.items(), ("o", "1700000000000-1")]
    assert await client.xlen(q.dlq(GROUP)) == 0  # the letter is deleted (XDEL keeps the key)
    assert not await client.exists(q.stream)


async def test_group_adds_origin_from_the_offset(client: Redis, q: QueueKeys) -> None:
    """Dead-lettered at its first delivery, a message has no `o`: the letter's offset is it."""
    dead_id = await letter(client, q, ORIGINAL)
    rs = q.retry_stream(GROUP)
    assert await replay(client, q, dead_id, "group", rs)
    ((_, fields),) = await entries(client, rs)
    assert list(fields.items()) == [*ORIGINAL.items(), ("o", OFFSET)]


async def test_group_without_origin_or_offset(client: Redis, q: QueueKeys) -> None:
    dead_id = await letter(client, q, ORIGINAL, offset=None)
    rs = q.retry_stream(GROUP)
    assert await replay(client, q, dead_id, "group", rs)
    ((_, fields),) = await entries(client, rs)
    assert fields == ORIGINAL


# ---------------------------------------------------------------------- to the topic


async def test_topic_writes_a_plain_copy(client: Redis, q: QueueKeys) -> None:
    dead_id = await letter(client, q, RETRY_COPY)
    new_id = await replay(client, q, dead_id, "topic", q.stream)
    assert isinstance(new_id, str)
    ((got_id, fields),) = await entries(client, q.stream)
    assert got_id == new_id
    assert list(fields.items()) == list(ORIGINAL.items())
    assert await client.xlen(q.dlq(GROUP)) == 0
    assert not await client.exists(q.retry_stream(GROUP))


async def test_topic_from_a_first_delivery(client: Redis, q: QueueKeys) -> None:
    dead_id = await letter(client, q, ORIGINAL)
    assert await replay(client, q, dead_id, "topic", q.stream)
    ((_, fields),) = await entries(client, q.stream)
    assert fields == ORIGINAL


async def test_entry_of_another_client_is_copied_exactly(redis_url: str, q: QueueKeys) -> None:
    body = bytes(range(256)) * 4
    async with connect(redis_url, decode=False) as raw:
        dead_id = (await raw.xadd(q.dlq(GROUP), {b"reason": b"undecodable", b"o:d": body})).decode()
        assert await replay(raw, q, dead_id, "topic", q.stream)
        ((_, fields),) = await entries(raw, q.stream)
    assert fields == {b"d": body}


# ---------------------------------------------------------------------- once only


@pytest.mark.parametrize("mode", ["group", "topic"])
async def test_second_replay_returns_nil_and_writes_nothing(
    client: Redis, q: QueueKeys, mode: str
) -> None:
    target = q.retry_stream(GROUP) if mode == "group" else q.stream
    dead_id = await letter(client, q, RETRY_COPY)
    other = await letter(client, q, {**ORIGINAL, "i": "M2"})
    assert await replay(client, q, dead_id, mode, target)
    assert await replay(client, q, dead_id, mode, target) is None
    assert await client.xlen(target) == 1
    assert [e[0] for e in await entries(client, q.dlq(GROUP))] == [other]


async def test_unknown_id_returns_nil(client: Redis, q: QueueKeys) -> None:
    assert await replay(client, q, "1-1", "group", q.retry_stream(GROUP)) is None
    assert not await client.exists(q.retry_stream(GROUP))


async def test_only_the_named_letter_moves(client: Redis, q: QueueKeys) -> None:
    ids = [await letter(client, q, {**ORIGINAL, "i": f"M{n}"}) for n in range(3)]
    assert await replay(client, q, ids[1], "topic", q.stream)
    assert [e[1]["i"] for e in await entries(client, q.stream)] == ["M1"]
    assert [e[0] for e in await entries(client, q.dlq(GROUP))] == [ids[0], ids[2]]


# ---------------------------------------------------------------------- cannot replay


@pytest.mark.parametrize("mode", ["group", "topic"])
async def test_lost_letter_returns_minus_1_and_stays(
    client: Redis, q: QueueKeys, mode: str
) -> None:
    target = q.retry_stream(GROUP) if mode == "group" else q.stream
    dead_id = await letter(client, q, None)
    assert await replay(client, q, dead_id, mode, target) == -1
    assert not await client.exists(target)
    assert [e[0] for e in await entries(client, q.dlq(GROUP))] == [dead_id]


async def test_letter_without_original_fields_returns_minus_1(client: Redis, q: QueueKeys) -> None:
    dead_id = str(await client.xadd(q.dlq(GROUP), dict(META)))  # type: ignore[arg-type]
    assert await replay(client, q, dead_id, "topic", q.stream) == -1
    assert not await client.exists(q.stream)
    assert await client.xlen(q.dlq(GROUP)) == 1


@pytest.mark.parametrize("mode", ["queue", "", "GROUP"])
async def test_bad_mode_errors_and_writes_nothing(client: Redis, q: QueueKeys, mode: str) -> None:
    dead_id = await letter(client, q, RETRY_COPY)
    with pytest.raises(ScriptError):
        await replay(client, q, dead_id, mode, q.stream)
    assert not await client.exists(q.stream)
    assert [e[0] for e in await entries(client, q.dlq(GROUP))] == [dead_id]


# ---------------------------------------------------------------------- with dead_letter.lua


async def test_round_trip_with_dead_letter(client: Redis, q: QueueKeys) -> None:
    """A retry copy dead-lettered from the retry stream comes back to the group with its origin."""
    rs = q.retry_stream(GROUP)
    await client.xgroup_create(rs, GROUP, "0", mkstream=True)
    entry_id = str(await client.xadd(rs, RETRY_COPY))  # type: ignore[arg-type]
    await client.xreadgroup(GROUP, "c1", {rs: ">"})
    dead_id = await call(
        client, "dead_letter", [rs, q.dlq(GROUP)], [GROUP, entry_id, "ack", "reason", "max_retries"]
    )
    assert dead_id
    assert await pending(client, rs, GROUP) == {}
    new_id = await replay(client, q, dead_id, "group", rs)
    stored = await entries(client, rs)
    assert [e[0] for e in stored] == [entry_id, new_id]
    assert stored[1][1] == {**ORIGINAL, "o": "1700000000000-1"}
    assert await client.xlen(q.dlq(GROUP)) == 0
    assert await client.xreadgroup(GROUP, "c1", {rs: ">"}) == [[rs, [(new_id, stored[1][1])]]]
