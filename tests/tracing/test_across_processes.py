"""Traces across a real worker process: the test process sends inside a span of its own (an
SDK provider with the in-memory exporter); `rmq worker run tests.apps.traced_app:app` handles
the messages with its own provider, which writes its spans to a file. Every consumer span is in
the producer's trace, a child of the message's PRODUCER span (a delayed message's starts a trace
of its own, linked to it), and carries the retries, dead letters and errors as events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import rmq
from tests.helpers import make_settings
from tests.tracing.conftest import Spans

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


def hexid(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def test_consumer_spans_are_in_the_producers_trace(
    spans: Spans, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    app = rmq.App(make_settings(redis_url, namespace))
    sent: dict[str, rmq.SendResult] = {}
    producer = app.producer(group="shop")
    async with app:
        with spans.tracer.start_as_current_span("checkout") as checkout:
            sent["plain"] = await app.send("orders", {"id": 1}, tag="paid", keys=["order-1"])
            sent["fail_once"] = await app.send("orders", {"id": 2, "fail_once": True})
            sent["reject"] = await app.send("orders", {"id": 3, "reject": True})
            sent["forward"] = await app.send("orders", {"id": 4, "forward": True})
            sent["delayed"] = await app.send("orders", {"id": 5}, delay=0.2)
            sent["orderly"] = await app.send("ledger", {"id": 6}, sharding_key="account-1")
            sent["broadcast"] = await app.send("config", {"id": 7})
            sent["batch"] = (await app.send_batch("orders", [{"id": 8}, {"id": 9}]))[0]
            sent["tx"] = await producer.send_in_transaction(
                "payments", {"id": 10}, execute=lambda msg, arg: rmq.TransactionState.COMMIT
            )
    trace_id = hexid(checkout.get_span_context().trace_id, 32)
    producer_spans = {m: s[0] for m, s in spans.by_msg_id("send ").items()}
    assert set(producer_spans) >= {r.msg_id for r in sent.values()}
    checkout_id = checkout.get_span_context().span_id
    for span in producer_spans.values():
        assert span.kind.name == "PRODUCER"
        assert span.parent is not None and span.parent.span_id == checkout_id
    commits = [e for e in spans.named("checkout")[0].events if e.name == "rmq.transaction.commit"]
    assert commits and commits[0].attributes["messaging.destination.name"] == "payments"

    out = tmp_path / "spans.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    env.update(RMQ_REDIS_URL=redis_url, RMQ_NAMESPACE=namespace, RMQ_BLOCK_SECONDS="0.3",
               RMQ_SHUTDOWN_GRACE="5", TRACED_SPANS=str(out))  # fmt: skip
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "rmq", "worker", "run", "tests.apps.traced_app:app"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    expected = 12  # 9 messages on orders/ledger/config/payments + a retry + the receipt + 1 batch

    def processed() -> list[dict[str, Any]]:
        return [s for s in read_spans(out) if s["name"].startswith("process ")]

    try:
        deadline = time.monotonic() + 40
        while len(processed()) < expected:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "worker.log").read_text())
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()

    worker_spans = read_spans(out)
    by_msg: dict[str, list[dict[str, Any]]] = {}
    for doc in processed():
        by_msg.setdefault(doc["attributes"]["messaging.message.id"], []).append(doc)
    for name, result in sent.items():
        (first, *rest) = by_msg[result.msg_id]
        parent = producer_spans[result.msg_id].get_span_context()
        assert first["kind"] == "CONSUMER" and first["service"] == "traced-worker"
        attributes = first["attributes"]
        assert attributes["messaging.system"] == "rmq"
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.destination.name"] == result.topic
        assert attributes["messaging.destination.partition.id"] == str(result.queue_id)
        assert attributes["messaging.rmq.message.delivery_count"] >= 1
        if name == "delayed":  # a trace of its own, linked to the producer's span
            assert first["trace_id"] != trace_id and first["parent_id"] is None
            assert first["links"] == [{"trace_id": trace_id, "span_id": hexid(parent.span_id, 16)}]
            assert attributes["messaging.rmq.message.delayed"] is True
            continue
        assert first["trace_id"] == trace_id, name
        assert first["parent_id"] == hexid(parent.span_id, 16), name
        if name == "fail_once":
            (second,) = rest
            assert [e["name"] for e in first["events"]] == ["exception", "rmq.retry"]
            assert first["events"][0]["attributes"]["exception.message"] == "card declined"
            assert first["status"] == "ERROR"
            assert first["attributes"]["messaging.rmq.outcome"] == "retry"
            assert second["attributes"]["messaging.rmq.message.reconsume_times"] == 1
            assert second["parent_id"] == hexid(parent.span_id, 16)  # every attempt, same parent
            assert second["attributes"]["messaging.rmq.outcome"] == "ack"
        else:
            assert rest == []
        if name == "reject":
            (event,) = first["events"]
            assert event["name"] == "rmq.dead_letter"
            assert event["attributes"]["rmq.dead_letter.reason"] == "rejected"
            assert first["status"] == "ERROR"
    orderly = by_msg[sent["orderly"].msg_id][0]["attributes"]
    assert orderly["messaging.rmq.consume_mode"] == "orderly"
    broadcast = by_msg[sent["broadcast"].msg_id][0]["attributes"]
    assert broadcast["messaging.rmq.message_model"] == "broadcasting"
    assert by_msg[sent["plain"].msg_id][0]["attributes"]["messaging.rmq.message.tag"] == "paid"

    # the chain: the billing span sent a receipt; its consumer span is in the same trace
    billing = by_msg[sent["forward"].msg_id][0]
    (receipt_send,) = [s for s in worker_spans if s["name"] == "send receipts"]
    assert receipt_send["parent_id"] == billing["span_id"] and receipt_send["trace_id"] == trace_id
    (receipt,) = [s for s in processed() if s["name"] == "process receipts"]
    assert receipt["parent_id"] == receipt_send["span_id"] and receipt["trace_id"] == trace_id
