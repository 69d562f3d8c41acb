"""rmq.admin against a real server: topics, groups, offsets, messages."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import redis

import rmq
from rmq.admin import StoredMessage
from rmq.errors import ConfigError, GroupNotFound, InvalidName, TopicNotFound
from rmq.keys import NamespaceKeys
from tests.helpers import running, wait_until


async def test_create_list_and_delete_topics(opened: rmq.App, r: redis.Redis) -> None:
    admin = opened.admin
    info, created = await admin.create_topic("orders", queues=3)
    assert (info.name, info.queues, created) == ("orders", 3, True)
    assert (await admin.create_topic("orders", queues=3))[1] is False
    with pytest.raises(ConfigError, match="exists with 3 queues"):
        await admin.create_topic("orders", queues=5)
    await admin.create_topic("audit")
    assert [t.name for t in await admin.topics()] == ["audit", "orders"]
    assert (await admin.topic("audit")).queues == opened.settings.default_queues

    await opened.send("orders", "x")
    await opened.send("orders-eu", "not touched by deleting orders")
    keys = NamespaceKeys(opened.settings.namespace)
    removed = await admin.delete_topic("orders")
    assert removed >= 2  # the stream that got the message, and the topic entry
    assert [t.name for t in await admin.topics()] == ["audit", "orders-eu"]
    assert not any(r.exists(keys.queue("orders", q).stream) for q in range(3))
    assert (
        r.xlen(keys.queue("orders-eu", 0).stream)
        + r.xlen(keys.queue("orders-eu", 1).stream)
        + r.xlen(keys.queue("orders-eu", 2).stream)
        + r.xlen(keys.queue("orders-eu", 3).stream)
        == 1
    )
    with pytest.raises(TopicNotFound):
        await admin.delete_topic("orders")
    with pytest.raises(TopicNotFound):
        await admin.topic_status("orders")
    with pytest.raises(InvalidName):
        await admin.create_topic("bad name")


async def test_topic_status(opened: rmq.App) -> None:
    await opened.admin.create_topic("orders", queues=2)
    sent = [await opened.send("orders", n, selector=lambda _n, _m: 1) for n in range(3)]
    async with opened.pull_consumer("orders", "billing", start="first"):
        pass
    status = await opened.admin.topic_status("orders")
    assert status.groups == ["billing"]
    q0, q1 = status.queues
    assert (q0.length, q0.first_id, q0.last_id) == (0, None, None)
    assert (q1.length, q1.first_id, q1.last_id) == (3, sent[0].offset, sent[-1].offset)
    assert q1.delayed == 0 and q1.half == 0
    assert [g.group for g in q1.groups] == ["billing"]


async def test_group_progress_list_and_consumers(opened: rmq.App, r: redis.Redis) -> None:
    await opened.admin.create_topic("orders", queues=2)
    async with opened.pull_consumer("orders", "billing", start="first") as pc:
        for n in range(5):
            await opened.send("orders", n, selector=lambda _n, _m: 0)
        await opened.send("orders", 5, selector=lambda _n, _m: 1)
        got = await pc.receive(max_messages=2, wait=1)
        assert len(got) == 2
        progress = await opened.admin.group_progress("orders", "billing")
        q0, q1 = progress.queues
        assert (q0.length, q0.pending) == (5, len([m for m in got if m.queue_id == 0]))
        assert progress.pending == 2
        assert progress.lag == 4
        assert q0.lag is not None and q1.lag is not None
        assert q0.oldest_pending_id == min(m.offset for m in got if m.queue_id == 0)
        assert progress.oldest_pending_age_seconds is not None
        assert 0 <= progress.oldest_pending_age_seconds < 60
        assert q0.consumers == 1

        (summary,) = await opened.admin.groups("orders")
        assert (summary.topic, summary.group, summary.lag, summary.pending) == (
            "orders", "billing", 4, 2,
        )  # fmt: skip
        assert [s.group for s in await opened.admin.groups()] == ["billing"]

        (consumer,) = await opened.admin.group_consumers("orders", "billing")
        assert consumer.pending == 2
        assert consumer.name == pc.name
        assert consumer.idle_seconds < 60
        await pc.ack(*got)
    with pytest.raises(GroupNotFound, match="does not exist"):
        await opened.admin.group_progress("orders", "nobody")
    with pytest.raises(GroupNotFound, match="does not exist"):
        await opened.admin.group_consumers("orders", "nobody")


async def test_delete_group(opened: rmq.App, r: redis.Redis) -> None:
    await opened.admin.create_topic("orders", queues=2)
    async with opened.pull_consumer("orders", "billing"):
        pass
    async with opened.pull_consumer("orders", "audit"):
        pass
    keys = NamespaceKeys(opened.settings.namespace)
    q0 = keys.queue("orders", 0)
    r.xadd(q0.dlq("billing"), {"reason": "x"})
    r.zadd(q0.retry("billing"), {"m": 1})
    r.xadd(q0.retry_stream("billing"), {"d": "x"})
    r.zadd(keys.members("orders", "billing"), {"me": 1})
    assert await opened.admin.delete_group("orders", "billing") == 2
    assert not any(
        r.exists(key)
        for key in (q0.dlq("billing"), q0.retry("billing"), q0.retry_stream("billing"),
                    keys.members("orders", "billing"))
    )  # fmt: skip
    assert r.smembers(keys.topic_groups("orders")) == {b"audit"}
    assert [s.group for s in await opened.admin.groups("orders")] == ["audit"]
    with pytest.raises(GroupNotFound, match="does not exist"):
        await opened.admin.delete_group("orders", "billing")


async def test_reset_offset_to_time_first_and_last(opened: rmq.App) -> None:
    await opened.admin.create_topic("orders", queues=2)
    async with opened.pull_consumer("orders", "billing"):
        pass
    early = [await opened.send("orders", n) for n in range(4)]
    await anyio.sleep(0.02)
    cut = datetime.now(UTC)
    await anyio.sleep(0.02)
    late = [await opened.send("orders", n) for n in range(4, 10)]

    resets = await opened.reset_offset("orders", "billing", cut)
    assert [x.queue_id for x in resets] == [0, 1]
    assert all(x.entries_read is not None for x in resets)
    progress = await opened.admin.group_progress("orders", "billing")
    assert progress.lag == len(late)
    async with opened.pull_consumer("orders", "billing") as pc:
        got = await pc.receive(max_messages=100, wait=1)
        assert sorted(m.msg_id for m in got) == sorted(r.msg_id for r in late)
        await pc.ack(*got)

    await opened.reset_offset("orders", "billing", "first")
    assert (await opened.admin.group_progress("orders", "billing")).lag == 10
    await opened.reset_offset("orders", "billing", "last")
    assert (await opened.admin.group_progress("orders", "billing")).lag == 0
    assert early  # sent before the cut: skipped by the time reset
    with pytest.raises(GroupNotFound, match="does not exist"):
        await opened.reset_offset("orders", "nobody", "first")
    with pytest.raises(ConfigError):
        await opened.reset_offset("orders", "billing", "middle")  # type: ignore[arg-type]


async def test_running_consumers_follow_a_reset(app: rmq.App) -> None:
    """No restart needed: the group's last-delivered id moves and the fetcher reads from it."""
    seen: list[str] = []

    @app.consumer("orders", group="billing")
    async def handle(msg: rmq.Message) -> None:
        seen.append(msg.msg_id)

    async with running(app):
        sent = [await app.send("orders", n) for n in range(3)]
        await wait_until(lambda: len(seen) == 3, what="first delivery")
        await app.reset_offset("orders", "billing", "first")
        await wait_until(lambda: len(seen) == 6, what="redelivery after the reset")
    assert sorted(seen) == sorted([r.msg_id for r in sent] * 2)


async def test_find_message_and_message_at(opened: rmq.App, r: redis.Redis) -> None:
    sent = await opened.send(
        "orders", {"id": 1}, tag="paid", keys=["order-1"], properties={"region": "eu"}
    )
    for n in range(5):
        await opened.send("orders", n)
    found = await opened.admin.find_message("orders", sent.msg_id)
    assert found is not None
    assert (found.msg_id, found.queue_id, found.offset) == (sent.msg_id, sent.queue_id, sent.offset)
    assert (found.tag, found.keys, found.properties, found.body) == (
        "paid", ["order-1"], {"region": "eu"}, {"id": 1},
    )  # fmt: skip
    assert found.body_type == "json"
    assert abs((found.stored_at - found.born_at).total_seconds()) < 5
    assert await opened.admin.find_message("orders", "0" * 32) is None

    at = await opened.admin.message_at("orders", sent.queue_id, sent.offset)
    assert at == found
    assert await opened.admin.message_at("orders", sent.queue_id, "1-1") is None
    with pytest.raises(ConfigError, match=r"queues 0\.\.3"):
        await opened.admin.message_at("orders", 9, sent.offset)

    # entries of other clients: found by entry id; undecodable ones come back with raw fields
    stream = NamespaceKeys(opened.settings.namespace).queue("orders", 0).stream
    raw_id = r.xadd(stream, {"payload": b"\xff\x00"}).decode()
    odd = await opened.admin.find_message("orders", raw_id)
    assert odd is not None and odd.error is not None
    assert odd.raw == {"payload": "base64:/wA="}


async def test_find_message_scans_in_slices(opened: rmq.App) -> None:
    admin = opened.admin
    admin.scan_chunk = 3
    results = await opened.send_batch("orders", list(range(20)), selector=lambda _n, _m: 2)
    target = results[17]
    found = await admin.find_message("orders", target.msg_id)
    assert found is not None and found.offset == target.offset


async def test_query_key(opened: rmq.App) -> None:
    admin = opened.admin
    admin.scan_chunk = 4
    sent = []
    for n in range(12):
        keys = ["user-7", f"order-{n}"] if n % 3 == 0 else [f"order-{n}"]
        pick = functools.partial(lambda queue, _n, _m: queue, n % 2)
        sent.append(await opened.send("orders", n, keys=keys, selector=pick))
        await anyio.sleep(0.003)  # ids of different queues compare by time only
    found = await admin.query_key("orders", "user-7")
    assert [m.body for m in found] == [0, 3, 6, 9]
    assert [m.msg_id for m in found] == [sent[n].msg_id for n in (0, 3, 6, 9)]
    assert [m.body for m in await admin.query_key("orders", "order-1")] == [1]
    assert len(await admin.query_key("orders", "user-7", limit=2)) == 2
    after = sent[5].offset
    assert [m.body for m in await admin.query_key("orders", "user-7", start=after)] == [6, 9]
    assert await admin.query_key("orders", "nobody") == []
    with pytest.raises(InvalidName):
        await admin.query_key("orders", "two words")


async def test_messages_range(opened: rmq.App) -> None:
    await opened.admin.create_topic("orders", queues=2)
    sent = []
    for n in range(6):  # a few ms apart: ids of different queues compare by time only
        sent.append(await opened.send("orders", n))
        await anyio.sleep(0.003)
    listed = await opened.admin.messages("orders", count=4)
    assert [m.body for m in listed] == [0, 1, 2, 3]
    one_queue = await opened.admin.messages("orders", queue=1, count=10)
    assert {m.queue_id for m in one_queue} == {1}
    assert [m.offset for m in one_queue] == [s.offset for s in sent if s.queue_id == 1]
    later = await opened.admin.messages("orders", start=sent[3].offset, count=10)
    assert [m.body for m in later] == [3, 4, 5]
    born = datetime.fromtimestamp(int(sent[2].offset.split("-")[0]) / 1000, UTC)
    upto = await opened.admin.messages("orders", end=born - timedelta(milliseconds=1))
    assert all(m.stored_at < born for m in upto)


async def test_send_and_consume(opened: rmq.App) -> None:
    admin = opened.admin
    result = await admin.send("orders", "hello", tag="t", keys=["k1"], sharding_key="user-1")
    assert result.status is rmq.SendStatus.SEND_OK
    got = [m async for m in admin.consume("orders", "cli", count=5, wait=0.3, start="first")]
    assert [m.body for m in got] == ["hello"]
    # acknowledged: nothing comes back for the group
    assert [m async for m in admin.consume("orders", "cli", count=5, wait=0.2)] == []
    progress = await admin.group_progress("orders", "cli")
    assert (progress.pending, progress.lag) == (0, 0)


async def test_consume_stops_at_count(opened: rmq.App) -> None:
    for n in range(5):
        await opened.send("orders", n)
    got = [
        m.body async for m in opened.admin.consume("orders", "g", count=3, wait=5, start="first")
    ]
    assert len(got) == 3


async def test_tail(opened: rmq.App) -> None:
    old = await opened.send("orders", "old")
    seen: list[StoredMessage] = []

    async def collect(start: object, n: int) -> None:
        async for msg in opened.admin.tail("orders", start=start, poll=0.01):  # type: ignore[arg-type]
            seen.append(msg)
            if len(seen) >= n:
                return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, "last", 2)
            await anyio.sleep(0.1)
            await opened.send("orders", "new-1")
            await opened.send("orders", "new-2")
    assert sorted(m.body for m in seen) == ["new-1", "new-2"]
    seen.clear()
    with anyio.fail_after(5):
        await collect("first", 3)
    # Across queues the order is by entry id (time); two sends in one millisecond may tie.
    assert seen[0].body == "old" and sorted(m.body for m in seen[1:]) == ["new-1", "new-2"]
    seen.clear()
    with anyio.fail_after(5):
        await collect(old.offset, 3)
    assert seen[0].offset == old.offset


async def test_server_info(opened: rmq.App) -> None:
    info = await opened.admin.server_info()
    assert info["name"] in ("redis", "valkey")
    assert info["version"][0].isdigit()
