"""retry.lua: acknowledge a failed delivery and schedule its copy (r, o, f) after a backoff."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import (
    add_entries,
    call,
    connect,
    entries,
    group_info,
    pending,
    read_ids,
    server_ms,
    unpacked,
)

GROUP = "g"
ME = "c1"
TOPIC = "orders"
# A script may round the server's clock up to the next ms: times are compared within this slack.
SLACK = 5
SIX = {"i": "M1", "t": "paid", "k": "k1 k2", "p": '{"r":"eu"}', "c": "2", "d": '{"a":1}'}


async def retry(
    client: Redis,
    q: QueueKeys,
    channel: str,
    *pairs: tuple[str, int | str],
    source: str | None = None,
    consumer: str = ME,
    group: str = GROUP,
) -> list[int]:
    args: list[Any] = [group, consumer, channel]
    for entry_id, delay in pairs:
        args += [entry_id, delay]
    keys = [source or q.stream, q.retry(group), q.retry_payload(group)]
    reply = await call(client, "retry", keys, args)
    assert isinstance(reply, list)
    return [int(x) for x in reply]


async def delivered(
    client: Redis, stream: str, *fields: dict[str, str], consumer: str = ME
) -> list[str]:
    """Entries added to `stream` and delivered to `consumer` of GROUP (so they are pending)."""
    await client.xgroup_create(stream, GROUP, "0", mkstream=True)
    ids = [str(await client.xadd(stream, f)) for f in fields]  # type: ignore[arg-type]
    assert await read_ids(client, GROUP, consumer, stream, len(ids)) == ids
    return ids


async def waiting(client: Redis, q: QueueKeys) -> list[tuple[str, int]]:
    rows: Any = await client.zrange(q.retry(GROUP), 0, -1, withscores=True)
    return [(m, int(s)) for m, s in rows]


async def nothing_scheduled(client: Redis, q: QueueKeys) -> bool:
    return not await client.exists(q.retry(GROUP), q.retry_payload(GROUP))


def copy_of(fields: dict[str, str], r: int, o: str, f: int | str) -> list[Any]:
    """The packed retry copy: the six fields (defaults for missing ones), then r, o, f."""
    six = {"i": "", "t": "", "k": "", "p": "", "c": "0", "d": "", **fields}
    out: list[Any] = []
    for name in ("i", "t", "k", "p", "c", "d"):
        out += [name, six[name]]
    return [*out, "r", r, "o", o, "f", f]


class Wakeups:
    def __init__(self, pubsub: PubSub, publisher: Redis, channel: str) -> None:
        self.pubsub = pubsub
        self.publisher = publisher
        self.channel = channel

    async def received(self) -> list[str]:
        """Messages published since the last call (read up to a sentinel published after them)."""
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        await self.publisher.publish(self.channel, sentinel)
        out: list[str] = []
        with anyio.fail_after(5):
            while True:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is None:
                    continue
                if message["data"] == sentinel:
                    return out
                out.append(message["data"])


@pytest.fixture
async def wakeups(redis_url: str, client: Redis, channel: str) -> AsyncIterator[Wakeups]:
    async with connect(redis_url) as sub:
        pubsub = sub.pubsub()
        await pubsub.subscribe(channel)
        with anyio.fail_after(5):
            while True:
                message = await pubsub.get_message(timeout=1)
                if message is not None and message["type"] == "subscribe":
                    break
        try:
            yield Wakeups(pubsub, client, channel)
        finally:
            await pubsub.aclose()


# ---------------------------------------------------------------------- scheduling


async def test_schedules_a_copy_and_acknowledges(client: Redis, q: QueueKeys, channel: str) -> None:
    (entry_id,) = await delivered(client, q.stream, SIX)
    before = await server_ms(client)
    assert await retry(client, q, channel, (entry_id, 10_000)) == [1]
    after = await server_ms(client)
    ((member, due),) = await waiting(client, q)
    assert member == "M1"
    assert before + 10_000 <= due <= after + 10_000 + SLACK
    packed = await unpacked(client, q.retry_payload(GROUP), "M1")
    assert packed is not None
    first_failure = packed[-1]
    assert before <= first_failure <= after + SLACK
    assert due == first_failure + 10_000  # one "now" per call
    assert packed == copy_of(SIX, 1, entry_id, first_failure)
    # acknowledged in the source stream; the entry itself stays there
    assert await pending(client, q.stream, GROUP) == {}
    assert (await group_info(client, q.stream, GROUP))["pending"] == 0
    assert [e[0] for e in await entries(client, q.stream)] == [entry_id]
    # nothing is appended anywhere yet: the promoter moves it when due
    assert not await client.exists(q.retry_stream(GROUP))


async def test_zero_delay_is_due_now(client: Redis, q: QueueKeys, channel: str) -> None:
    (entry_id,) = await delivered(client, q.stream, SIX)
    assert await retry(client, q, channel, (entry_id, 0)) == [1]
    after = await server_ms(client)
    ((_, due),) = await waiting(client, q)
    assert due <= after + 1


async def test_several_entries_one_status_each(client: Redis, q: QueueKeys, channel: str) -> None:
    ids = await delivered(client, q.stream, {**SIX, "i": "A"}, {**SIX, "i": "B"}, {**SIX, "i": "C"})
    await client.xack(q.stream, GROUP, ids[1])
    statuses = await retry(client, q, channel, (ids[0], 5_000), (ids[1], 5_000), (ids[2], 1_000))
    assert statuses == [1, 0, 1]
    assert [m for m, _ in await waiting(client, q)] == ["C", "A"]
    assert sorted(await client.hkeys(q.retry_payload(GROUP))) == ["A", "C"]
    assert await pending(client, q.stream, GROUP) == {}


async def test_entry_of_another_client_gets_defaults(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    """An entry with only `d` gets msg_id = its entry id and empty/zero defaults."""
    (entry_id,) = await delivered(client, q.stream, {"d": "raw"})
    assert await retry(client, q, channel, (entry_id, 1_000)) == [1]
    assert [m for m, _ in await waiting(client, q)] == [entry_id]
    packed = await unpacked(client, q.retry_payload(GROUP), entry_id)
    assert packed is not None
    assert packed == copy_of({"i": entry_id, "d": "raw"}, 1, entry_id, packed[-1])


async def test_binary_body_is_kept_exactly(redis_url: str, q: QueueKeys, channel: str) -> None:
    body = bytes(range(256)) * 4
    async with connect(redis_url, decode=False) as raw:
        await raw.xgroup_create(q.stream, GROUP, "0", mkstream=True)
        entry_id = (await raw.xadd(q.stream, {"i": "M1", "c": "0", "d": body})).decode()
        await raw.xreadgroup(GROUP, ME, {q.stream: ">"})
        assert await retry(raw, q, channel, (entry_id, 1_000)) == [1]
        packed = await unpacked(raw, q.retry_payload(GROUP), "M1")
    assert packed is not None
    assert packed[10:12] == [b"d", body]


# ---------------------------------------------------------------------- only the owner's entries


async def test_entry_of_another_consumer_is_left_alone(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    (entry_id,) = await delivered(client, q.stream, SIX)
    await client.xclaim(q.stream, GROUP, "c2", 0, [entry_id], justid=True)
    assert await retry(client, q, channel, (entry_id, 1_000)) == [0]
    assert await nothing_scheduled(client, q)
    assert (await pending(client, q.stream, GROUP))[entry_id]["consumer"] == "c2"
    # the new owner may retry it
    assert await retry(client, q, channel, (entry_id, 1_000), consumer="c2") == [1]


async def test_acknowledged_entry_is_left_alone(client: Redis, q: QueueKeys, channel: str) -> None:
    (entry_id,) = await delivered(client, q.stream, SIX)
    await client.xack(q.stream, GROUP, entry_id)
    assert await retry(client, q, channel, (entry_id, 1_000)) == [0]
    assert await nothing_scheduled(client, q)


async def test_never_delivered_or_unknown_entry_is_left_alone(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    (entry_id,) = await add_entries(client, q.stream, 1)
    assert await retry(client, q, channel, (entry_id, 1_000), ("1-1", 1_000)) == [0, 0]
    assert await nothing_scheduled(client, q)


async def test_second_retry_of_one_delivery_does_nothing(
    client: Redis, q: QueueKeys, channel: str, wakeups: Wakeups
) -> None:
    (entry_id,) = await delivered(client, q.stream, SIX)
    assert await retry(client, q, channel, (entry_id, 1_000)) == [1]
    assert await wakeups.received() == [q.retry(GROUP)]
    before = await waiting(client, q)
    assert await retry(client, q, channel, (entry_id, 1)) == [0]
    assert await waiting(client, q) == before
    assert await wakeups.received() == []


async def test_trimmed_payload_is_acknowledged_and_reported(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    gone, kept = await delivered(client, q.stream, {**SIX, "i": "GONE"}, SIX)
    await client.xdel(q.stream, gone)
    assert await retry(client, q, channel, (gone, 1_000), (kept, 1_000)) == [-1, 1]
    assert await pending(client, q.stream, GROUP) == {}
    assert [m for m, _ in await waiting(client, q)] == ["M1"]
    assert await client.hkeys(q.retry_payload(GROUP)) == ["M1"]


# ---------------------------------------------------------------------- r, o, f across retries


async def test_retry_from_the_retry_stream_keeps_origin_and_first_failure(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    """The source may be the group's retry stream itself: r grows, o and f stay."""
    rs = q.retry_stream(GROUP)
    copy = {**SIX, "r": "3", "o": "1700000000000-5", "f": "1700000000123"}
    (entry_id,) = await delivered(client, rs, copy)
    assert await retry(client, q, channel, (entry_id, 2_000), source=rs) == [1]
    packed = await unpacked(client, q.retry_payload(GROUP), "M1")
    # f is copied as stored in the stream (a string); r is counted (a number)
    assert packed == copy_of(SIX, 4, "1700000000000-5", "1700000000123")
    assert await pending(client, rs, GROUP) == {}
    assert not await client.exists(q.stream)


async def test_full_cycle_through_promote(client: Redis, q: QueueKeys, channel: str) -> None:
    """Queue stream -> retry -> promote -> retry stream -> retry again: r counts, o and f stay."""
    (entry_id,) = await delivered(client, q.stream, SIX)
    rs = q.retry_stream(GROUP)
    await client.xgroup_create(rs, GROUP, "0", mkstream=True)
    assert await retry(client, q, channel, (entry_id, 0)) == [1]
    first = await unpacked(client, q.retry_payload(GROUP), "M1")
    assert first is not None
    first_failure = first[-1]

    async def promote_one() -> None:
        with anyio.fail_after(5):
            while True:  # due now, or in a ms (the script may round its clock up)
                reply = await call(
                    client, "promote", [q.retry(GROUP), q.retry_payload(GROUP), rs], [10]
                )
                if reply[0] == 1:
                    return
                await anyio.sleep(0.001)

    await promote_one()
    ((rs_id, fields),) = await entries(client, rs)
    assert fields == {**SIX, "r": "1", "o": entry_id, "f": str(first_failure)}
    assert await read_ids(client, GROUP, ME, rs, 10) == [rs_id]
    assert await retry(client, q, channel, (rs_id, 0), source=rs) == [1]
    second = await unpacked(client, q.retry_payload(GROUP), "M1")
    assert second == copy_of(SIX, 2, entry_id, str(first_failure))
    await promote_one()
    stored = await entries(client, rs)
    assert [e[1]["r"] for e in stored] == ["1", "2"]
    assert {e[1]["o"] for e in stored} == {entry_id}
    assert {e[1]["f"] for e in stored} == {str(first_failure)}
    assert await pending(client, rs, GROUP) == {}


async def test_groups_are_independent(client: Redis, q: QueueKeys, channel: str) -> None:
    (entry_id,) = await delivered(client, q.stream, SIX)
    await client.xgroup_create(q.stream, "other", "0")
    await client.xreadgroup("other", ME, {q.stream: ">"})
    assert await retry(client, q, channel, (entry_id, 1_000)) == [1]
    assert set(await pending(client, q.stream, "other")) == {entry_id}
    assert not await client.exists(q.retry("other"))


# ---------------------------------------------------------------------- wake-ups


async def test_wakes_only_when_sooner_than_the_waiting_ones(
    client: Redis, q: QueueKeys, channel: str, wakeups: Wakeups
) -> None:
    ids = await delivered(client, q.stream, *({**SIX, "i": f"M{n}"} for n in range(6)))
    assert await retry(client, q, channel, (ids[0], 30_000)) == [1]
    assert await wakeups.received() == [q.retry(GROUP)]  # the first one waiting
    assert await retry(client, q, channel, (ids[1], 60_000)) == [1]
    assert await wakeups.received() == []  # later than M0
    assert await retry(client, q, channel, (ids[2], 10_000)) == [1]
    assert await wakeups.received() == [q.retry(GROUP)]  # sooner than M0
    assert await retry(client, q, channel, (ids[3], 5_000), (ids[4], 1_000)) == [1, 1]
    assert await wakeups.received() == [q.retry(GROUP)]  # once per call
    assert await retry(client, q, channel, (ids[5], 1_000), consumer="c9") == [0]
    assert await wakeups.received() == []  # nothing scheduled
    assert [m for m, _ in await waiting(client, q)] == ["M4", "M3", "M2", "M0", "M1"]


# ---------------------------------------------------------------------- malformed calls


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(["ID"], id="id-without-delay"),
        pytest.param(["ID", 1_000, "ID"], id="odd-pairs"),
        pytest.param(["ID", "soon"], id="delay-not-a-number"),
        pytest.param(["ID", 1_000, "ID", "1s"], id="second-delay-not-a-number"),
    ],
)
async def test_malformed_calls_write_nothing(
    client: Redis, q: QueueKeys, channel: str, tail: list[Any]
) -> None:
    """Validated before anything is written: the entry stays pending, nothing is scheduled."""
    (entry_id,) = await delivered(client, q.stream, SIX)
    args = [GROUP, ME, channel, *(entry_id if a == "ID" else a for a in tail)]
    with pytest.raises(ScriptError):
        await call(client, "retry", [q.stream, q.retry(GROUP), q.retry_payload(GROUP)], args)
    assert set(await pending(client, q.stream, GROUP)) == {entry_id}
    assert await nothing_scheduled(client, q)
