"""rmq transaction list|count: pending half messages and discarded transactions."""

from __future__ import annotations

import time
from typing import Any

import anyio

import rmq
from rmq.transaction import CheckBack
from tests.cli.conftest import Invoke, as_json
from tests.helpers import make_settings

GROUP = "order-service"
UNKNOWN = rmq.TransactionState.UNKNOWN


def unknown(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
    return UNKNOWN


async def prepare(redis_url: str, namespace: str) -> list[rmq.TransactionSendResult]:
    """Three unresolved transactions on "orders" (4 queues): two of GROUP, one of "other"."""
    async with rmq.App(make_settings(redis_url, namespace)) as app:
        await app.admin.create_topic("orders", queues=4)
        mine, other = app.producer(group=GROUP), app.producer(group="other")
        return [
            await mine.send_in_transaction(
                "orders", {"order": 1}, execute=unknown, tag="paid", keys=["order-1"],
                selector=lambda n, m: 1,
            ),
            await mine.send_in_transaction(
                "orders", "second", execute=unknown, delay=30, selector=lambda n, m: 2
            ),
            await other.send_in_transaction(
                "orders", "theirs", execute=unknown, selector=lambda n, m: 3
            ),
        ]  # fmt: skip


async def discard(redis_url: str, namespace: str) -> rmq.TransactionSendResult:
    """One transaction of GROUP on "payments", discarded after its only check."""
    settings = make_settings(
        redis_url, namespace, transaction_check_immunity=0.05, transaction_check_interval=0.05,
        transaction_max_checks=1,
    )  # fmt: skip
    async with rmq.App(settings) as app:
        sent = await app.producer(group=GROUP).send_in_transaction(
            "payments", "pay", execute=unknown, tag="card"
        )
        checkback = CheckBack(app.context, GROUP, lambda m: UNKNOWN)
        wire = app.context.conn.wires()
        deadline = time.monotonic() + 5
        try:
            while await app.admin.pending_transactions("payments"):
                assert time.monotonic() < deadline, "never discarded"
                await anyio.sleep(0.03)
                await checkback.check_once(wire)
        finally:
            await wire.close()
    return sent


def test_list_and_count_pending(cli: Invoke, redis_url: str, namespace: str) -> None:
    sent = anyio.run(prepare, redis_url, namespace)
    doc = as_json(cli("transaction", "list", "orders", "--json"))
    assert (doc["topic"], doc["group"], doc["discarded"]) == ("orders", None, False)
    listed = doc["transactions"]
    assert [t["msg_id"] for t in listed] == [s.msg_id for s in sent]
    first = listed[0]
    assert set(first) == {
        "topic", "queue_id", "msg_id", "group", "checks", "prepared_at", "next_check_at",
        "delay_seconds", "deliver_at", "message", "error",
    }  # fmt: skip
    assert (first["queue_id"], first["group"], first["checks"], first["error"]) == (
        1, GROUP, 0, None,
    )  # fmt: skip
    assert first["prepared_at"] < first["next_check_at"]
    message = first["message"]
    assert (message["msg_id"], message["body"], message["tag"], message["keys"]) == (
        sent[0].msg_id, {"order": 1}, "paid", ["order-1"],
    )  # fmt: skip
    assert (message["offset"], message["stored_at"], message["delivery_count"]) == ("", None, 0)
    assert (listed[1]["delay_seconds"], listed[1]["deliver_at"]) == (30.0, None)
    assert listed[2]["group"] == "other"

    mine = as_json(cli("transaction", "list", "orders", "--group", GROUP, "--json"))
    assert mine["group"] == GROUP
    assert [t["msg_id"] for t in mine["transactions"]] == [s.msg_id for s in sent[:2]]
    one = as_json(cli("--json", "transaction", "list", "orders", "--queue", "2"))
    assert [t["msg_id"] for t in one["transactions"]] == [sent[1].msg_id]
    few = as_json(cli("transaction", "list", "orders", "-n", "1", "--json"))
    assert [t["msg_id"] for t in few["transactions"]] == [sent[0].msg_id]

    text = cli("transaction", "list", "orders").stdout
    assert "3 pending transaction(s)" in text
    for column in ("QUEUE", "MSG ID", "GROUP", "CHECKS", "PREPARED", "NEXT CHECK", "TAG", "BODY"):
        assert column in text
    assert sent[0].msg_id in text and "paid" in text and '{"order":1}' in text
    assert "other" in text
    text = cli("transaction", "list", "orders", "-g", "other").stdout
    assert "1 pending transaction(s) of other" in text and sent[0].msg_id not in text

    counted = as_json(cli("transaction", "count", "orders", "--json"))
    assert counted == {
        "topic": "orders", "group": None, "pending": 3, "discarded": None,
        "queues": [
            {"queue_id": q, "pending": n, "discarded": None} for q, n in enumerate([0, 1, 1, 1])
        ],
    }  # fmt: skip
    counted = as_json(cli("transaction", "count", "orders", "--group", GROUP, "--json"))
    assert (counted["pending"], counted["discarded"]) == (2, 0)
    assert [q["pending"] for q in counted["queues"]] == [0, 1, 1, 0]
    assert "orders: 3 pending transaction(s)" in cli("transaction", "count", "orders").stdout
    text = cli("transaction", "count", "orders", "-g", GROUP).stdout
    assert "2 pending transaction(s) of order-service, 0 discarded" in text
    assert "DISCARDED" in text


def test_list_discarded(cli: Invoke, redis_url: str, namespace: str) -> None:
    sent = anyio.run(discard, redis_url, namespace)
    assert as_json(cli("transaction", "list", "payments", "--json"))["transactions"] == []
    doc = as_json(cli("transaction", "list", "payments", "--group", GROUP, "--discarded", "--json"))
    assert (doc["topic"], doc["group"], doc["discarded"]) == ("payments", GROUP, True)
    (gone,) = doc["transactions"]
    assert set(gone) == {
        "topic", "queue_id", "id", "msg_id", "group", "checks", "prepared_at", "discarded_at",
        "reason", "message", "error",
    }  # fmt: skip
    assert (gone["msg_id"], gone["queue_id"], gone["group"], gone["checks"], gone["reason"]) == (
        sent.msg_id, sent.queue_id, GROUP, 1, "max_checks",
    )  # fmt: skip
    assert gone["prepared_at"] < gone["discarded_at"]
    assert (gone["message"]["body"], gone["message"]["tag"]) == ("pay", "card")
    text = cli("transaction", "list", "payments", "-g", GROUP, "--discarded").stdout
    assert "1 discarded transaction(s) of order-service" in text
    assert sent.msg_id in text and "max_checks" in text and "DISCARDED" in text
    other = as_json(cli("transaction", "list", "payments", "-g", "other", "--discarded", "--json"))
    assert other["transactions"] == []
    counted = as_json(cli("transaction", "count", "payments", "-g", GROUP, "--json"))
    assert (counted["pending"], counted["discarded"]) == (0, 1)


def test_usage_errors_and_unknown_topics(cli: Invoke, redis_url: str, namespace: str) -> None:
    result = cli("transaction", "list", "orders", "--discarded", code=2)
    assert "--discarded needs --group" in result.stderr
    result = cli("transaction", "list", "nope", code=1)
    assert "topic 'nope' does not exist" in result.stderr
    cli("transaction", "count", "nope", code=1)
    cli("transaction", "list", "nope", "--group", GROUP, "--discarded", code=1)
    cli("transaction", "list", "orders", "-n", "0", code=2)

    async def create() -> None:
        async with rmq.App(make_settings(redis_url, namespace)) as app:
            await app.admin.create_topic("orders", queues=2)

    anyio.run(create)
    result = cli("transaction", "list", "orders", "--queue", "5", code=2)
    assert "queues 0..1" in result.stderr
    cli("transaction", "list", "orders", "--group", "bad group", code=2)
    assert "pending" in cli("transaction", "--help").stdout
    assert as_json(cli("transaction", "list", "orders", "--json"))["transactions"] == []
