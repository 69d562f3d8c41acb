"""schedule.lua: delayed messages wait in the queue's zset + payload hash, or go to the stream."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from rmq.embedded import EmbeddedServer
from rmq.errors import ScriptError
from rmq.keys import NamespaceKeys, QueueKeys
from tests.scripts import call, connect, entries, queue_keys, server_ms, unpacked

TTL = 60_000
SESSION = "s1"
TOPIC = "orders"
FIELD_NAMES = ["i", "t", "k", "p", "c", "d"]
# A script may round the server's clock up to the next ms (so "after" delays are never short):
# due times are compared with TIME readings taken around the call, within this slack.
SLACK = 5


def msg(
    msg_id: str,
    kind: str,
    value: int | str,
    body: str | bytes = "body",
    *,
    tag: str = "",
    keys: str = "",
    props: str = "",
    flags: str = "0",
) -> list[Any]:
    """The 8 values of one message: kind, delay or due, msg_id, tag, keys, props, flags, body."""
    return [kind, value, msg_id, tag, keys, props, flags, body]


def record_key(q: QueueKeys, session: str = SESSION) -> str:
    """KEYS[4], as the producer names it: the session's dedup key with a ":d" suffix."""
    return q.dedup(f"{session}:d")


def schedule_keys(q: QueueKeys, session: str = SESSION) -> list[str]:
    return [q.stream, q.delay, q.delay_payload, record_key(q, session)]


async def schedule(
    client: Redis,
    q: QueueKeys,
    channel: str,
    *messages: list[Any],
    ttl: int | str = TTL,
    retry: bool = False,
    session: str = SESSION,
) -> list[Any]:
    args: list[Any] = [ttl, "1" if retry else "0", channel]
    for m in messages:
        args.extend(m)
    result = await call(client, "schedule", schedule_keys(q, session), args)
    assert isinstance(result, list)
    return result


async def scheduled(client: Redis, q: QueueKeys) -> list[tuple[str, int]]:
    rows: Any = await client.zrange(q.delay, 0, -1, withscores=True)
    return [(m, int(s)) for m, s in rows]


class Wakeups:
    """A real pub/sub subscription to the wake channel."""

    def __init__(self, pubsub: PubSub, publisher: Redis, channel: str) -> None:
        self.pubsub = pubsub
        self.publisher = publisher
        self.channel = channel

    async def received(self) -> list[str]:
        """Every message published since the last call.

        A sentinel is published on the same connection the scripts run on, so Redis delivers it
        after anything those scripts published: reading up to it is exact, without sleeping.
        """
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        await self.publisher.publish(self.channel, sentinel)
        out: list[str] = []
        with anyio.fail_after(5):
            while True:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is None:
                    continue
                data = message["data"]
                if data == sentinel:
                    return out
                out.append(data)


@asynccontextmanager
async def subscribed(redis_url: str, publisher: Redis, channel: str) -> AsyncIterator[Wakeups]:
    async with connect(redis_url) as sub:
        pubsub = sub.pubsub()
        await pubsub.subscribe(channel)
        with anyio.fail_after(5):
            while True:  # the subscription is active once Redis confirms it
                message = await pubsub.get_message(timeout=1)
                if message is not None and message["type"] == "subscribe":
                    break
        try:
            yield Wakeups(pubsub, publisher, channel)
        finally:
            await pubsub.aclose()


@pytest.fixture
async def wakeups(redis_url: str, client: Redis, channel: str) -> AsyncIterator[Wakeups]:
    async with subscribed(redis_url, client, channel) as w:
        yield w


def fields_of(
    msg_id: str,
    body: str = "body",
    tag: str = "",
    keys: str = "",
    props: str = "",
    flags: str = "0",
) -> list[str]:
    return ["i", msg_id, "t", tag, "k", keys, "p", props, "c", flags, "d", body]


# ---------------------------------------------------------------------- due times


async def test_after_is_relative_to_server_time(client: Redis, q: QueueKeys, channel: str) -> None:
    before = await server_ms(client)
    reply = await schedule(
        client,
        q,
        channel,
        msg(
            "M1",
            "after",
            60_000,
            '{"a":1}',
            tag="paid",
            keys="k1 k2",
            props='{"r":"eu"}',
            flags="2",
        ),
    )
    after = await server_ms(client)
    assert len(reply) == 2
    entry_id, due = reply
    assert entry_id is None
    assert before + 60_000 <= due <= after + 60_000 + SLACK
    assert await scheduled(client, q) == [("M1", due)]
    assert await unpacked(client, q.delay_payload, "M1") == fields_of(
        "M1", '{"a":1}', tag="paid", keys="k1 k2", props='{"r":"eu"}', flags="2"
    )
    assert not await client.exists(q.stream)


async def test_at_is_absolute(client: Redis, q: QueueKeys, channel: str) -> None:
    at = await server_ms(client) + 3_600_000
    assert await schedule(client, q, channel, msg("M1", "at", at)) == [None, at]
    assert await scheduled(client, q) == [("M1", at)]
    assert await client.hkeys(q.delay_payload) == ["M1"]
    assert not await client.exists(q.stream)


@pytest.mark.parametrize(
    ("kind", "offset"),
    [("at", -5_000), ("at", 0), ("after", 0), ("after", -5_000)],
)
async def test_due_time_passed_appends_at_once(
    client: Redis, q: QueueKeys, channel: str, kind: str, offset: int
) -> None:
    now = await server_ms(client)
    value = now + offset if kind == "at" else offset
    entry_id, due = await schedule(
        client, q, channel, msg("M1", kind, value, "now", tag="t1", keys="k", flags="1")
    )
    assert isinstance(entry_id, str)
    assert due <= await server_ms(client) + SLACK
    if kind == "at":
        assert due == value
    stored = await entries(client, q.stream)
    assert stored == [
        (entry_id, dict(zip(FIELD_NAMES, ["M1", "t1", "k", "", "1", "now"], strict=True)))
    ]
    assert list(stored[0][1]) == FIELD_NAMES  # the fixed field order
    assert not await client.exists(q.delay)
    assert not await client.exists(q.delay_payload)


async def test_chunk_mixes_due_and_future_messages(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    now = await server_ms(client)
    later = now + 120_000
    reply = await schedule(
        client,
        q,
        channel,
        msg("A", "after", 0, "a"),
        msg("B", "at", later, "b"),
        msg("C", "at", now - 1, "c"),
        msg("D", "after", 60_000, "d"),
    )
    assert len(reply) == 8
    a_id, a_due, b_id, b_due, c_id, c_due, d_id, d_due = reply
    assert isinstance(a_id, str) and isinstance(c_id, str)
    assert b_id is None and d_id is None
    assert b_due == later and c_due == now - 1
    assert a_due == d_due - 60_000  # one server time per call
    stored = await entries(client, q.stream)
    assert [(e[0], e[1]["i"], e[1]["d"]) for e in stored] == [(a_id, "A", "a"), (c_id, "C", "c")]
    assert await scheduled(client, q) == [("D", d_due), ("B", later)]
    assert sorted(await client.hkeys(q.delay_payload)) == ["B", "D"]
    assert await unpacked(client, q.delay_payload, "B") == fields_of("B", "b")
    assert await unpacked(client, q.delay_payload, "D") == fields_of("D", "d")


async def test_binary_body_is_packed_exactly(redis_url: str, q: QueueKeys, channel: str) -> None:
    body = bytes(range(256)) * 4
    async with connect(redis_url, decode=False) as raw:
        await schedule(raw, q, channel, msg("M1", "after", 60_000, body))
        packed = await unpacked(raw, q.delay_payload, "M1")
    assert packed is not None
    assert packed[-2:] == [b"d", body]


async def test_same_msg_id_rescheduled_replaces_its_due_time(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    """The zset and hash are keyed by msg_id: a second schedule of one id is one member."""
    at = await server_ms(client) + 60_000
    await schedule(client, q, channel, msg("M1", "at", at, "one"))
    await schedule(client, q, channel, msg("M1", "at", at + 1000, "two"))
    assert await scheduled(client, q) == [("M1", at + 1000)]
    assert await unpacked(client, q.delay_payload, "M1") == fields_of("M1", "two")


# ---------------------------------------------------------------------- the record (KEYS[4])


async def test_record_keeps_the_first_msg_id_and_the_outcome(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    reply = await schedule(client, q, channel, msg("A", "after", 0), msg("B", "after", 60_000))
    saved = json.loads(str(await client.get(record_key(q))))
    assert saved[0] == "A"
    assert saved[1] == [reply[0], reply[1], False, reply[3]]
    pttl = await client.pttl(record_key(q))
    assert TTL - 5_000 < pttl <= TTL
    assert await client.keys(f"{q.prefix}:dd:*") == [record_key(q)]


async def test_retry_of_a_stored_chunk_returns_its_first_outcome(
    client: Redis, q: QueueKeys, channel: str, wakeups: Wakeups
) -> None:
    first = await schedule(
        client, q, channel, msg("A", "after", 0, "first"), msg("B", "after", 60_000, "first")
    )
    assert await wakeups.received() == [q.delay]
    again = await schedule(
        client,
        q,
        channel,
        msg("A", "after", 0, "retried"),
        msg("B", "after", 1_000, "retried"),
        retry=True,
    )
    assert again == first
    # nothing scheduled or appended twice, nothing overwritten, no wake-up
    stored = await entries(client, q.stream)
    assert [(e[0], e[1]["d"]) for e in stored] == [(first[0], "first")]
    assert await scheduled(client, q) == [("B", first[3])]
    assert await unpacked(client, q.delay_payload, "B") == fields_of("B", "first")
    assert await wakeups.received() == []


async def test_retry_whose_first_msg_id_differs_schedules(
    client: Redis, q: QueueKeys, channel: str
) -> None:
    first = await schedule(client, q, channel, msg("P", "after", 60_000))
    reply = await schedule(
        client, q, channel, msg("A", "after", 0), msg("B", "after", 30_000), retry=True
    )
    assert reply != first
    assert isinstance(reply[0], str) and reply[2] is None
    assert await client.xlen(q.stream) == 1
    assert [m for m, _ in await scheduled(client, q)] == ["B", "P"]
    assert json.loads(str(await client.get(record_key(q))))[0] == "A"


async def test_retry_without_a_record_schedules(client: Redis, q: QueueKeys, channel: str) -> None:
    entry_id, due = await schedule(client, q, channel, msg("A", "after", 60_000), retry=True)
    assert entry_id is None
    assert await scheduled(client, q) == [("A", due)]
    assert json.loads(str(await client.get(record_key(q)))) == ["A", [False, due]]


async def test_first_attempts_never_look_up(client: Redis, q: QueueKeys, channel: str) -> None:
    (first, _) = await schedule(client, q, channel, msg("A", "after", 0))
    (second, _) = await schedule(client, q, channel, msg("A", "after", 0))
    assert first != second
    assert await client.xlen(q.stream) == 2


async def test_sessions_have_their_own_records(client: Redis, q: QueueKeys, channel: str) -> None:
    one = await schedule(client, q, channel, msg("A", "after", 60_000), session="one")
    two = await schedule(client, q, channel, msg("B", "after", 60_000), session="two")
    assert (
        await schedule(client, q, channel, msg("A", "after", 1), session="one", retry=True) == one
    )
    assert (
        await schedule(client, q, channel, msg("B", "after", 1), session="two", retry=True) == two
    )
    again = await schedule(client, q, channel, msg("A", "after", 5), session="two", retry=True)
    assert again != one  # session two's record starts with B: A is scheduled again
    assert await scheduled(client, q) == [("A", again[1]), ("B", two[1])]


async def test_ttl_zero_records_nothing(client: Redis, q: QueueKeys, channel: str) -> None:
    await schedule(client, q, channel, msg("A", "after", 60_000), ttl=0)
    assert not await client.exists(record_key(q))
    assert await client.zcard(q.delay) == 1


# ---------------------------------------------------------------------- wake-ups


async def test_wakes_only_when_due_sooner_than_everything_scheduled(
    client: Redis, q: QueueKeys, channel: str, wakeups: Wakeups
) -> None:
    now = await server_ms(client)
    await schedule(client, q, channel, msg("A", "at", now + 60_000))
    assert await wakeups.received() == [q.delay]  # the first one on the queue
    await schedule(client, q, channel, msg("B", "at", now + 90_000))
    assert await wakeups.received() == []  # later than A
    await schedule(client, q, channel, msg("C", "at", now + 60_000))
    assert await wakeups.received() == []  # as soon as A, not sooner
    await schedule(client, q, channel, msg("D", "at", now + 30_000))
    assert await wakeups.received() == [q.delay]  # sooner than A
    await schedule(client, q, channel, msg("E", "after", 0))
    assert await wakeups.received() == []  # appended at once: nothing to promote
    await schedule(
        client,
        q,
        channel,
        msg("F", "at", now + 20_000),
        msg("G", "at", now + 10_000),
        msg("H", "at", now + 95_000),
    )
    assert await wakeups.received() == [q.delay]  # once per call
    assert [m for m, _ in await scheduled(client, q)] == ["G", "F", "D", "A", "C", "B", "H"]


async def test_wake_compares_with_the_same_queue_only(
    client: Redis, namespace: str, channel: str, wakeups: Wakeups
) -> None:
    q0, q1 = queue_keys(namespace, TOPIC, 0), queue_keys(namespace, TOPIC, 1)
    now = await server_ms(client)
    await schedule(client, q0, channel, msg("A", "at", now + 10_000))
    assert await wakeups.received() == [q0.delay]
    await schedule(client, q1, channel, msg("B", "at", now + 60_000))
    assert await wakeups.received() == [q1.delay]  # q1 had nothing scheduled
    assert await client.zcard(q0.delay) == 1
    assert await client.zcard(q1.delay) == 1


async def test_wake_goes_to_the_given_channel(
    redis_url: str, client: Redis, q: QueueKeys, namespace: str
) -> None:
    other = NamespaceKeys(namespace).wake("other-topic")
    async with subscribed(redis_url, client, other) as w:
        await schedule(client, q, other, msg("A", "after", 60_000))
        assert await w.received() == [q.delay]


# ---------------------------------------------------------------------- malformed calls


def _ok() -> list[Any]:
    return msg("A", "after", 60_000)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([TTL, "0", "ch"], id="no-message"),
        pytest.param([TTL, "0", "ch", *_ok()[:6]], id="six-values"),
        pytest.param([TTL, "0", "ch", *_ok(), "after", 5], id="second-message-short"),
        pytest.param([TTL, "0", *_ok()], id="no-channel"),
        pytest.param(["soon", "0", "ch", *_ok()], id="ttl-not-a-number"),
        pytest.param([TTL, "0", "ch", *msg("A", "later", 5)], id="bad-kind"),
        pytest.param([TTL, "0", "ch", *msg("A", "after", "5s")], id="delay-not-a-number"),
        pytest.param([TTL, "0", "ch", *msg("A", "at", "")], id="due-empty"),
        pytest.param([TTL, "0", "ch", *_ok(), *msg("B", "later", 5)], id="bad-kind-second"),
        pytest.param(
            [TTL, "0", "ch", *msg("A", "after", 0), *msg("B", "after", "x")],
            id="bad-delay-second-after-due-one",
        ),
    ],
)
async def test_malformed_calls_write_nothing(
    client: Redis, q: QueueKeys, wakeups: Wakeups, args: list[Any]
) -> None:
    """Scripts validate, then write: a malformed chunk is not half-stored."""
    args = [wakeups.channel if a == "ch" else a for a in args]
    with pytest.raises(ScriptError):
        await call(client, "schedule", schedule_keys(q), args)
    for key in (q.stream, q.delay, q.delay_payload, record_key(q)):
        assert not await client.exists(key), key
    assert await wakeups.received() == []


async def test_script_error_on_a_fresh_server_is_a_script_error(
    server_factory: type[EmbeddedServer], q: QueueKeys
) -> None:
    """The first call on a server that does not know the scripts goes through NOSCRIPT + load:
    a script error of that call is reported like any other (ScriptError)."""
    server = server_factory().start()
    async with connect(server.url) as fresh:
        with pytest.raises(ScriptError):
            await call(fresh, "schedule", schedule_keys(q), [TTL, "0", "ch", *msg("A", "x", 1)])
        assert not await fresh.exists(q.delay)
