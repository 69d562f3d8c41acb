"""Listing transactions read-only (`app.admin.pending_transactions`, `discarded_transactions`,
`transaction_counts`) against a real Redis: fields, filters, paging, resolution, discards."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import rmq
from rmq.transaction import CheckBack, DiscardedTransaction, PendingTransaction
from tests.helpers import make_settings
from tests.scripts.halves import half

UNKNOWN = rmq.TransactionState.UNKNOWN
GROUP = "order-service"


def unknown(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
    return UNKNOWN


@pytest.fixture
def settings(redis_url: str, namespace: str) -> rmq.Settings:
    """Nobody checks during a test unless it runs a check-back itself."""
    return make_settings(
        redis_url, namespace, transaction_check_immunity=30.0, transaction_check_interval=60.0
    )


async def test_pending_half_messages_with_their_fields(opened: rmq.App) -> None:
    admin = opened.admin
    await admin.create_topic("tx-list", queues=4)
    producer, other = opened.producer(group=GROUP), opened.producer(group="other")
    before = datetime.now(UTC)
    plain = await producer.send_in_transaction(
        "tx-list", {"order": 1}, execute=unknown, tag="paid", keys=["order-1"],
        properties={"region": "eu"}, selector=lambda n, m: 1,
    )  # fmt: skip
    later = await producer.send_in_transaction(
        "tx-list", "later", execute=unknown, delay=5, selector=lambda n, m: 2
    )
    due = (before + timedelta(days=1)).replace(microsecond=0)
    fixed = await producer.send_in_transaction(
        "tx-list", b"\x00raw", execute=unknown, deliver_at=due, selector=lambda n, m: 2
    )
    theirs = await other.send_in_transaction(
        "tx-list", "theirs", execute=unknown, selector=lambda n, m: 3
    )
    after = datetime.now(UTC)

    listed = await admin.pending_transactions("tx-list")
    assert [t.msg_id for t in listed] == [plain.msg_id, later.msg_id, fixed.msg_id, theirs.msg_id]
    assert [t.next_check_at for t in listed] == sorted(t.next_check_at for t in listed)
    by_id = {t.msg_id: t for t in listed}
    for t in listed:
        assert t.topic == "tx-list" and t.checks == 0 and t.error is None
        assert before - timedelta(seconds=1) <= t.prepared_at <= after + timedelta(seconds=1)
        assert t.next_check_at - t.prepared_at == timedelta(seconds=30)
    first = by_id[plain.msg_id]
    assert (first.queue_id, first.group, first.delay_seconds, first.deliver_at) == (
        1, GROUP, None, None,
    )  # fmt: skip
    msg = first.message
    assert msg is not None
    assert (msg.msg_id, msg.topic, msg.queue_id, msg.group, msg.offset) == (
        plain.msg_id, "tx-list", 1, GROUP, "",
    )  # fmt: skip
    assert (msg.body, msg.tag, msg.keys, msg.properties) == (
        {"order": 1}, "paid", ["order-1"], {"region": "eu"},
    )  # fmt: skip
    assert (by_id[later.msg_id].delay_seconds, by_id[later.msg_id].deliver_at) == (5.0, None)
    assert (by_id[fixed.msg_id].delay_seconds, by_id[fixed.msg_id].deliver_at) == (None, due)
    assert by_id[fixed.msg_id].message.body == b"\x00raw"
    assert (by_id[theirs.msg_id].group, by_id[theirs.msg_id].queue_id) == ("other", 3)

    mine = await admin.pending_transactions("tx-list", group=GROUP)
    assert [t.msg_id for t in mine] == [plain.msg_id, later.msg_id, fixed.msg_id]
    assert [t.msg_id for t in await admin.pending_transactions("tx-list", group="nobody")] == []
    on_two = await admin.pending_transactions("tx-list", queue=2)
    assert [t.msg_id for t in on_two] == [later.msg_id, fixed.msg_id]
    assert [t.msg_id for t in await admin.pending_transactions("tx-list", limit=2)] == [
        plain.msg_id, later.msg_id,
    ]  # fmt: skip

    counts = await admin.transaction_counts("tx-list")
    assert [(c.queue_id, c.pending, c.discarded) for c in counts] == [
        (0, 0, None), (1, 1, None), (2, 2, None), (3, 1, None),
    ]  # fmt: skip
    counts = await admin.transaction_counts("tx-list", GROUP)
    assert [(c.pending, c.discarded) for c in counts] == [(0, 0), (1, 0), (2, 0), (0, 0)]

    # resolved ones are gone; listing changed nothing
    await producer._half_store().commit("tx-list", 1, [plain.msg_id])
    await producer._half_store().rollback("tx-list", 2, [later.msg_id])
    remaining = await admin.pending_transactions("tx-list")
    assert [(t.msg_id, t.checks, t.next_check_at) for t in remaining] == [
        (t.msg_id, t.checks, t.next_check_at) for t in listed[2:]
    ]


async def test_pages_cover_every_message_once_in_order(opened: rmq.App) -> None:
    """Messages prepared in the same ms on several queues: (next check, queue, msg_id) order."""
    await opened.admin.create_topic("tx-pages", queues=4)
    producer = opened.producer(group=GROUP)

    async def send(n: int) -> None:
        await producer.send_in_transaction(
            "tx-pages", n, execute=unknown, selector=lambda queues, msg: n % 4
        )

    async with anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(send, n)
    everything = await opened.admin.pending_transactions("tx-pages", limit=100)
    assert len(everything) == 30
    assert [t.cursor for t in everything] == sorted(t.cursor for t in everything)
    for size in (1, 4, 7):
        seen: list[PendingTransaction] = []
        after: PendingTransaction | None = None
        while True:
            page = await opened.admin.pending_transactions("tx-pages", limit=size, after=after)
            if not page:
                break
            assert len(page) <= size
            seen += page
            after = page[-1]
        assert [t.msg_id for t in seen] == [t.msg_id for t in everything], size


async def test_checked_then_discarded(redis_url: str, namespace: str) -> None:
    settings = make_settings(
        redis_url, namespace, transaction_check_immunity=0.05, transaction_check_interval=0.2,
        transaction_max_checks=1,
    )  # fmt: skip
    async with rmq.App(settings) as app:
        admin = app.admin
        producer = app.producer(group=GROUP)
        sent = await producer.send_in_transaction(
            "tx-gone", {"n": 1}, execute=unknown, keys=["order-7"], tag="t"
        )
        other = await producer.send_in_transaction("tx-gone", "other", execute=unknown)
        listed = await admin.pending_transactions("tx-gone", group=GROUP)
        assert {t.msg_id: t.checks for t in listed} == {sent.msg_id: 0, other.msg_id: 0}
        first = next(t for t in listed if t.msg_id == sent.msg_id)
        await anyio.sleep(0.1)
        checkback = CheckBack(app.context, GROUP, lambda m: UNKNOWN)
        wire = app.context.conn.wires()
        try:
            await checkback.check_once(wire)
            listed = await admin.pending_transactions("tx-gone", group=GROUP)
            assert {t.msg_id: t.checks for t in listed} == {sent.msg_id: 1, other.msg_id: 1}
            checked = next(t for t in listed if t.msg_id == sent.msg_id)
            assert checked.message is not None and checked.message.delivery_count == 1
            assert checked.next_check_at > first.next_check_at
            assert await admin.discarded_transactions("tx-gone", GROUP) == []
            deadline = time.monotonic() + 5
            while await admin.pending_transactions("tx-gone"):
                assert time.monotonic() < deadline, "never discarded"
                await anyio.sleep(0.05)
                await checkback.check_once(wire)
        finally:
            await wire.close()
        gone = await admin.discarded_transactions("tx-gone", GROUP)
        assert sorted(t.msg_id or "" for t in gone) == sorted([sent.msg_id, other.msg_id])
        record = next(t for t in gone if t.msg_id == sent.msg_id)
        assert isinstance(record, DiscardedTransaction)
        assert (record.topic, record.queue_id, record.group, record.checks, record.reason) == (
            "tx-gone", sent.queue_id, GROUP, 1, "max_checks",
        )  # fmt: skip
        assert record.prepared_at == first.prepared_at
        assert record.prepared_at is not None and record.discarded_at > record.prepared_at
        assert record.message is not None and record.error is None
        assert (record.message.body, record.message.keys, record.message.tag) == (
            {"n": 1}, ["order-7"], "t",
        )  # fmt: skip
        assert [t.msg_id for t in gone] == [t.msg_id for t in sorted(gone, key=lambda t: t.id)]
        # paging and one queue
        page = await admin.discarded_transactions("tx-gone", GROUP, limit=1)
        assert [t.id for t in page] == [gone[0].id]
        rest = await admin.discarded_transactions("tx-gone", GROUP, after=gone[0])
        assert [t.id for t in rest] == [gone[1].id]
        one = await admin.discarded_transactions("tx-gone", GROUP, queue=sent.queue_id)
        assert sent.msg_id in {t.msg_id for t in one}
        assert {t.queue_id for t in one} == {sent.queue_id}
        assert await admin.discarded_transactions("tx-gone", "other") == []
        counts = await admin.transaction_counts("tx-gone", GROUP)
        assert sum(c.discarded or 0 for c in counts) == 2
        assert sum(c.pending for c in counts) == 0


async def test_an_undecodable_half_message(opened: rmq.App) -> None:
    await opened.admin.create_topic("tx-bad", queues=1)
    ctx = opened.context
    q = ctx.keys.queue("tx-bad", 0)
    keys = (q.half, q.half_group(GROUP), q.half_payload, q.half_done)
    await ctx.conn.scripts.call(
        ctx.conn.commands, "prepare", keys, [GROUP, 1000, *half("M1", "x", flags="7")]
    )
    (t,) = await opened.admin.pending_transactions("tx-bad")
    assert (t.msg_id, t.group, t.message) == ("M1", GROUP, None)
    assert t.error is not None and "flags" in t.error


async def test_bad_requests(opened: rmq.App) -> None:
    admin = opened.admin
    with pytest.raises(rmq.TopicNotFound, match="nope"):
        await admin.pending_transactions("nope")
    with pytest.raises(rmq.TopicNotFound):
        await admin.discarded_transactions("nope", GROUP)
    with pytest.raises(rmq.TopicNotFound):
        await admin.transaction_counts("nope")
    await admin.create_topic("tx-req", queues=2)
    with pytest.raises(rmq.ConfigError, match=r"queues 0\.\.1"):
        await admin.pending_transactions("tx-req", queue=2)
    with pytest.raises(rmq.ConfigError, match="limit"):
        await admin.pending_transactions("tx-req", limit=0)
    with pytest.raises(rmq.ConfigError, match="limit"):
        await admin.discarded_transactions("tx-req", GROUP, limit=0)
    with pytest.raises(rmq.InvalidName):
        await admin.pending_transactions("tx-req", group="bad group")
