"""send.lua: append messages with fixed field order and a msg_id dedup window."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import call, connect, entries, queue_keys

TTL = 60_000
SESSION = "s1"


def msg(
    msg_id: str,
    body: str | bytes = "body",
    *,
    tag: str = "",
    keys: str = "",
    props: str = "",
    flags: str = "0",
) -> list[Any]:
    return [msg_id, tag, keys, props, flags, body]


async def send(
    client: Redis,
    q: QueueKeys,
    *messages: list[Any],
    ttl: int = TTL,
    retry: bool = False,
    session: str = SESSION,
) -> list[str]:
    args: list[Any] = [ttl, "1" if retry else "0"]
    for m in messages:
        args.extend(m)
    result = await call(client, "send", [q.stream, q.dedup(session)], args)
    assert isinstance(result, list)
    return result


async def test_appends_with_fixed_field_order(client: Redis, q: QueueKeys) -> None:
    ids = await send(
        client,
        q,
        msg("M1", '{"a":1}', tag="paid", keys="k1 k2", props='{"r":"eu"}', flags="2"),
    )
    assert len(ids) == 1
    ((entry_id, fields),) = await entries(client, q.stream)
    assert entry_id == ids[0]
    assert list(fields.items()) == [
        ("i", "M1"),
        ("t", "paid"),
        ("k", "k1 k2"),
        ("p", '{"r":"eu"}'),
        ("c", "2"),
        ("d", '{"a":1}'),
    ]


async def test_empty_optional_fields_are_kept(client: Redis, q: QueueKeys) -> None:
    (entry_id,) = await send(client, q, msg("M1", ""))
    stored = await entries(client, q.stream)
    assert stored == [(entry_id, {"i": "M1", "t": "", "k": "", "p": "", "c": "0", "d": ""})]


async def test_binary_body_is_stored_exactly(redis_url: str, q: QueueKeys) -> None:
    body = bytes(range(256)) * 4
    async with connect(redis_url, decode=False) as raw:
        (entry_id,) = await send(raw, q, msg("M1", body, flags="0"))
        ((got_id, fields),) = await entries(raw, q.stream)
    assert got_id == entry_id
    assert fields[b"d"] == body


async def test_chunk_keeps_order_and_records_only_its_start(client: Redis, q: QueueKeys) -> None:
    ids = await send(client, q, msg("A", "1"), msg("B", "2"), msg("C", "3"))
    stored = await entries(client, q.stream)
    assert [(e[0], e[1]["i"], e[1]["d"]) for e in stored] == [
        (ids[0], "A", "1"),
        (ids[1], "B", "2"),
        (ids[2], "C", "3"),
    ]
    assert await client.get(q.dedup(SESSION)) == f"A {ids[0]}"
    pttl = await client.pttl(q.dedup(SESSION))
    assert TTL - 5000 < pttl <= TTL


async def test_record_memory_is_per_session_not_per_message(client: Redis, q: QueueKeys) -> None:
    for n in range(50):
        await send(client, q, msg(f"M{n}"), msg(f"N{n}"))
    assert await client.xlen(q.stream) == 100
    assert await client.keys(f"{q.prefix}:dd:*") == [q.dedup(SESSION)]
    assert str(await client.get(q.dedup(SESSION))).startswith("M49 ")


async def test_retry_of_a_stored_chunk_returns_its_ids(client: Redis, q: QueueKeys) -> None:
    first = await send(client, q, msg("A", "first"), msg("B"))
    again = await send(client, q, msg("A", "retried"), msg("B"), retry=True)
    assert again == first
    assert await client.xlen(q.stream) == 2
    assert (await entries(client, q.stream))[0][1]["d"] == "first"


async def test_retry_of_a_chunk_that_never_landed_stores_it(client: Redis, q: QueueKeys) -> None:
    (previous,) = await send(client, q, msg("P"))
    ids = await send(client, q, msg("A"), msg("B"), retry=True)
    assert previous not in ids
    assert await client.xlen(q.stream) == 3
    assert await client.get(q.dedup(SESSION)) == f"A {ids[0]}"


async def test_retry_with_entries_between_still_matches(client: Redis, q: QueueKeys) -> None:
    """Other producers may append after the chunk; the chunk's own entries are found in place."""
    first = await send(client, q, msg("A"), msg("B"))
    await send(client, q, msg("X"), session="other")
    again = await send(client, q, msg("A"), msg("B"), retry=True)
    assert again == first
    assert await client.xlen(q.stream) == 3


async def test_retry_without_a_record_stores(client: Redis, q: QueueKeys) -> None:
    ids = await send(client, q, msg("A"), retry=True)
    assert await client.xlen(q.stream) == 1
    assert await client.get(q.dedup(SESSION)) == f"A {ids[0]}"


async def test_retry_whose_entries_were_trimmed_is_stored_again(
    client: Redis, q: QueueKeys
) -> None:
    (first,) = await send(client, q, msg("A"))
    await client.xdel(q.stream, first)
    (again,) = await send(client, q, msg("A"), retry=True)
    assert again != first
    assert await client.xlen(q.stream) == 1


async def test_first_attempts_never_look_up(client: Redis, q: QueueKeys) -> None:
    (first,) = await send(client, q, msg("A"))
    (second,) = await send(client, q, msg("A"))
    assert first != second
    assert await client.xlen(q.stream) == 2


async def test_sessions_are_independent(client: Redis, q: QueueKeys) -> None:
    (a,) = await send(client, q, msg("A"), session="one")
    (b,) = await send(client, q, msg("B"), session="two")
    assert await client.get(q.dedup("one")) == f"A {a}"
    assert await client.get(q.dedup("two")) == f"B {b}"
    assert await send(client, q, msg("A"), session="one", retry=True) == [a]


async def test_ttl_zero_records_nothing(client: Redis, q: QueueKeys) -> None:
    await send(client, q, msg("A"), ttl=0)
    assert not await client.exists(q.dedup(SESSION))


async def test_queues_are_independent(client: Redis, namespace: str) -> None:
    q0, q1 = queue_keys(namespace, "t", 0), queue_keys(namespace, "t", 1)
    (a,) = await send(client, q0, msg("A"))
    (b,) = await send(client, q1, msg("A"), retry=True)
    assert a and b
    assert await client.xlen(q0.stream) == 1
    assert await client.xlen(q1.stream) == 1


@pytest.mark.parametrize(
    "args",
    [
        [TTL, "0"],  # no message
        [TTL, "0", *msg("A"), "B", ""],  # the second message has 2 of 6 values
        ["soon", "0", *msg("A")],  # ttl not a number
    ],
)
async def test_malformed_calls_write_nothing(client: Redis, q: QueueKeys, args: list[Any]) -> None:
    """Scripts validate, then write: nothing is half-stored."""
    with pytest.raises(ScriptError):
        await call(client, "send", [q.stream, q.dedup(SESSION)], args)
    assert not await client.exists(q.stream)
    assert not await client.exists(q.dedup(SESSION))
