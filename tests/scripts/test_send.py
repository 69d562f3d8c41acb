"""send.lua: append messages with fixed field order and a msg_id dedup window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import call, connect, entries, queue_keys

TTL = 60_000
BUCKET = 1000


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    async with connect(redis_url) as c:
        yield c


@pytest.fixture
def q(namespace: str) -> QueueKeys:
    return queue_keys(namespace)


def msg(
    msg_id: str,
    body: str | bytes = "body",
    *,
    check: str = "0",
    tag: str = "",
    keys: str = "",
    props: str = "",
    flags: str = "0",
) -> list[Any]:
    return [check, msg_id, tag, keys, props, flags, body]


async def send(
    client: Redis, q: QueueKeys, *messages: list[Any], ttl: int = TTL, bucket: int = BUCKET
) -> list[str]:
    args: list[Any] = [ttl]
    for m in messages:
        args.extend(m)
    result = await call(client, "send", [q.stream, q.dedup(bucket), q.dedup(bucket - 1)], args)
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
    # the reply's field pairs, in stored order
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
    assert list(stored[0][1]) == ["i", "t", "k", "p", "c", "d"]


async def test_binary_body_is_stored_exactly(redis_url: str, q: QueueKeys) -> None:
    body = bytes(range(256)) * 4
    async with connect(redis_url, decode=False) as raw:
        (entry_id,) = await send(raw, q, msg("M1", body, flags="0"))
        ((got_id, fields),) = await entries(raw, q.stream)
    assert got_id == entry_id
    assert fields[b"d"] == body


async def test_batch_keeps_order_and_records_every_msg_id(client: Redis, q: QueueKeys) -> None:
    ids = await send(client, q, msg("A", "1"), msg("B", "2"), msg("C", "3"))
    assert len(ids) == 3
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    stored = await entries(client, q.stream)
    assert [(e[0], e[1]["i"], e[1]["d"]) for e in stored] == [
        (ids[0], "A", "1"),
        (ids[1], "B", "2"),
        (ids[2], "C", "3"),
    ]
    assert await client.hgetall(q.dedup(BUCKET)) == {"A": ids[0], "B": ids[1], "C": ids[2]}


async def test_dedup_bucket_expires(client: Redis, q: QueueKeys) -> None:
    await send(client, q, msg("A"), ttl=TTL)
    pttl = await client.pttl(q.dedup(BUCKET))
    assert 0 < pttl <= TTL
    assert pttl > TTL - 5000
    assert not await client.exists(q.dedup(BUCKET - 1))


async def test_each_send_refreshes_the_bucket_ttl(client: Redis, q: QueueKeys) -> None:
    await send(client, q, msg("A"), ttl=5000)
    assert await client.pttl(q.dedup(BUCKET)) <= 5000
    await send(client, q, msg("B"), ttl=TTL)
    assert await client.pttl(q.dedup(BUCKET)) > 5000


async def test_retry_finds_msg_id_in_current_bucket(client: Redis, q: QueueKeys) -> None:
    (first,) = await send(client, q, msg("A", "first"))
    (again,) = await send(client, q, msg("A", "retried", check="1"))
    assert again == first
    assert await client.xlen(q.stream) == 1
    assert (await entries(client, q.stream))[0][1]["d"] == "first"


async def test_retry_finds_msg_id_in_previous_bucket(client: Redis, q: QueueKeys) -> None:
    (first,) = await send(client, q, msg("A"), bucket=BUCKET)
    (again,) = await send(client, q, msg("A", check="1"), bucket=BUCKET + 1)
    assert again == first
    assert await client.xlen(q.stream) == 1


async def test_msg_id_two_buckets_old_is_not_found(client: Redis, q: QueueKeys) -> None:
    (first,) = await send(client, q, msg("A"), bucket=BUCKET)
    (again,) = await send(client, q, msg("A", check="1"), bucket=BUCKET + 2)
    assert again != first
    assert await client.xlen(q.stream) == 2


async def test_retried_batch_appends_only_the_missing(client: Redis, q: QueueKeys) -> None:
    (a,) = await send(client, q, msg("A"))
    ids = await send(client, q, msg("A", check="1"), msg("B", check="1"))
    assert ids[0] == a
    assert ids[1] != a
    assert await client.xlen(q.stream) == 2
    assert await client.hgetall(q.dedup(BUCKET)) == {"A": a, "B": ids[1]}


async def test_same_msg_id_twice_in_one_retried_batch(client: Redis, q: QueueKeys) -> None:
    ids = await send(client, q, msg("A", check="1"), msg("A", check="1"))
    assert ids[0] == ids[1]
    assert await client.xlen(q.stream) == 1


async def test_check_zero_does_not_look_up(client: Redis, q: QueueKeys) -> None:
    """A first attempt ("0") only records: the same msg_id sent twice as new is stored twice."""
    (first,) = await send(client, q, msg("A"))
    (second,) = await send(client, q, msg("A"))
    assert first != second
    assert await client.xlen(q.stream) == 2
    assert await client.hget(q.dedup(BUCKET), "A") == second


async def test_ttl_zero_records_nothing(client: Redis, q: QueueKeys) -> None:
    (first,) = await send(client, q, msg("A"), ttl=0)
    assert not await client.exists(q.dedup(BUCKET))
    assert not await client.exists(q.dedup(BUCKET - 1))
    (second,) = await send(client, q, msg("A", check="1"), ttl=0)
    assert second != first
    assert await client.xlen(q.stream) == 2
    assert not await client.exists(q.dedup(BUCKET))


async def test_no_messages(client: Redis, q: QueueKeys) -> None:
    assert await send(client, q) == []
    assert not await client.exists(q.stream)
    assert not await client.exists(q.dedup(BUCKET))


async def test_stream_is_created_on_first_send(client: Redis, q: QueueKeys) -> None:
    assert not await client.exists(q.stream)
    await send(client, q, msg("A"))
    assert await client.type(q.stream) == "stream"
    assert await client.type(q.dedup(BUCKET)) == "hash"


async def test_queues_are_independent(client: Redis, namespace: str) -> None:
    q0, q1 = queue_keys(namespace, "t", 0), queue_keys(namespace, "t", 1)
    (a,) = await send(client, q0, msg("A"))
    (b,) = await send(client, q1, msg("A", check="1"))
    assert await client.xlen(q0.stream) == 1
    assert await client.xlen(q1.stream) == 1
    assert await client.hget(q0.dedup(BUCKET), "A") == a
    assert await client.hget(q1.dedup(BUCKET), "A") == b


async def test_malformed_batch_writes_nothing(client: Redis, q: QueueKeys) -> None:
    """Scripts validate, then write: a batch with a truncated message is not half-stored."""
    args: list[Any] = [TTL, *msg("A"), "0", "B"]  # the second message has 2 of 7 values
    with pytest.raises(ScriptError):
        await call(client, "send", [q.stream, q.dedup(BUCKET), q.dedup(BUCKET - 1)], args)
    assert await client.xlen(q.stream) == 0
    assert not await client.exists(q.dedup(BUCKET))
