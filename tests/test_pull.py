"""Pull consumer (SimpleConsumer semantics) against a real Redis."""

from __future__ import annotations

import time

import anyio
import pytest
import redis

import rmq
from rmq.keys import NamespaceKeys


async def test_receive_and_ack(opened: rmq.App) -> None:
    sent = await opened.send_batch("pull", [f"m{i}" for i in range(10)], sharding_key="k")
    async with opened.pull_consumer("pull", "g", start="first") as pc:
        msgs = await pc.receive(max_messages=32)
        assert [m.body for m in msgs] == [f"m{i}" for i in range(10)]
        assert [m.msg_id for m in msgs] == [s.msg_id for s in sent]
        assert all(m.group == "g" and m.delivery_count == 1 for m in msgs)
        assert await pc.ack(*msgs[:4]) == 4
        assert await pc.ack(msgs[0]) == 0  # acknowledged before
        assert await pc.receive(max_messages=32) == []


async def test_max_messages_is_respected_across_queues(opened: rmq.App) -> None:
    await opened.send_batch("spread", list(range(5)), sharding_key="a")
    await opened.send_batch("spread", list(range(5, 12)), sharding_key="b")
    async with opened.pull_consumer("spread", "g", start="first") as pc:
        first = await pc.receive(max_messages=8)
        rest = await pc.receive(max_messages=8)
        assert len(first) == 8
        assert len(rest) == 4
        assert sorted(m.body for m in first + rest) == list(range(12))


async def test_never_more_than_max_messages(opened: rmq.App) -> None:
    for key in ("a", "b", "c", "d", "e", "f"):
        await opened.send_batch("few", [key] * 3, sharding_key=key)
    async with opened.pull_consumer("few", "g", start="first") as pc:
        got: list[str] = []
        for _ in range(18):
            batch = await pc.receive(max_messages=1)
            assert len(batch) == 1
            got += [m.body for m in batch]
            await pc.ack(*batch)
        assert await pc.receive(max_messages=1) == []
    assert sorted(got) == sorted([k for k in "abcdef" for _ in range(3)])


async def test_unacked_messages_come_back_after_their_invisible_time(opened: rmq.App) -> None:
    await opened.send("inv", "job")
    async with opened.pull_consumer("inv", "g", start="first") as a:
        (msg,) = await a.receive(invisible=0.3)
        async with opened.pull_consumer("inv", "g") as b:
            assert await b.receive() == []
            await anyio.sleep(0.35)
            (again,) = await b.receive(invisible=30)
        assert again.msg_id == msg.msg_id
        assert again.delivery_count == 2
        assert again.reconsume_times == 1
        # the first receiver's time ran out and b owns it now
        assert await a.change_invisible_duration(msg, 60) is False


async def test_change_invisible_duration_extends(opened: rmq.App) -> None:
    await opened.send("ext", "job")
    async with opened.pull_consumer("ext", "g", start="first") as pc:
        (msg,) = await pc.receive(invisible=0.3)
        assert await pc.change_invisible_duration(msg, 5) is True
        await anyio.sleep(0.4)
        assert await pc.receive() == []
        assert await pc.ack(msg) == 1
        assert await pc.change_invisible_duration(msg, 5) is False


async def test_nack_redelivers_after_delay(opened: rmq.App) -> None:
    await opened.send("nack", "job")
    async with opened.pull_consumer("nack", "g", start="first") as pc:
        (msg,) = await pc.receive(invisible=30)
        assert await pc.nack(msg) is True
        (again,) = await pc.receive()
        assert again.offset == msg.offset and again.delivery_count == 2
        assert await pc.nack(again, delay=0.3) is True
        assert await pc.receive() == []
        await anyio.sleep(0.35)
        assert [m.offset for m in await pc.receive()] == [msg.offset]


async def test_long_polling_returns_as_soon_as_a_message_arrives(opened: rmq.App) -> None:
    async with opened.pull_consumer("poll", "g") as pc:
        async with anyio.create_task_group() as tg:

            async def send_later() -> None:
                await anyio.sleep(0.2)
                await opened.send("poll", "late")

            tg.start_soon(send_later)
            started = time.monotonic()
            msgs = await pc.receive(wait=5.0)
        assert [m.body for m in msgs] == ["late"]
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        assert await pc.receive(wait=0.3) == []
        assert time.monotonic() - started >= 0.3


async def test_undecodable_entries_are_set_aside(
    opened: rmq.App, r: redis.Redis, namespace: str
) -> None:
    await opened.context.topics.create("bad", 1)
    queue = NamespaceKeys(namespace).queue("bad", 0)
    async with opened.pull_consumer("bad", "g") as pc:
        r.xadd(queue.stream, {"junk": "1"})
        await opened.send("bad", "good")
        msgs = await pc.receive()
        assert [m.body for m in msgs] == ["good"]
    assert r.xlen(queue.dlq("g")) == 1


async def test_argument_validation(opened: rmq.App) -> None:
    async with opened.pull_consumer("args", "g") as pc:
        with pytest.raises(rmq.ConfigError):
            await pc.receive(max_messages=0)
        with pytest.raises(rmq.ConfigError):
            await pc.receive(invisible=0)
    with pytest.raises(rmq.ConsumerError, match="async with"):
        await opened.pull_consumer("args", "g").receive()
    with pytest.raises(rmq.InvalidName):
        opened.pull_consumer("args", "bad group")
    for bad in (0, -1, True, 2.5):
        with pytest.raises(rmq.ConfigError, match="max_deliveries"):
            opened.pull_consumer("args", "g", max_deliveries=bad)  # type: ignore[arg-type]


async def test_a_message_never_acknowledged_is_dead_lettered_after_max_deliveries(
    opened: rmq.App,
) -> None:
    sent = await opened.send("poison", "job")
    await opened.send("poison", "fine")
    async with opened.pull_consumer("poison", "g", start="first", max_deliveries=2) as pc:
        first = await pc.receive(invisible=0.05)
        assert sorted(m.body for m in first) == ["fine", "job"]
        await pc.ack(*[m for m in first if m.body == "fine"])
        await anyio.sleep(0.08)
        (second,) = await pc.receive(invisible=0.05)
        assert (second.msg_id, second.delivery_count) == (sent.msg_id, 2)
        await anyio.sleep(0.08)
        assert await pc.receive(invisible=0.05) == []  # the third time: dead-lettered instead
        assert pc.dead_lettered == 1
        await anyio.sleep(0.08)
        assert await pc.receive(invisible=0.05) == []  # and never comes back
    (letter,) = await opened.dead_letters("poison", "g").entries(10)
    assert (letter.msg_id, letter.reason, letter.attempts) == (sent.msg_id, "max_deliveries", 2)
    assert letter.message is not None and letter.message.body == "job"
