"""Spans in one process: pull receives, the blocking client, check-backs, and tracing off."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio

import rmq
import rmq.sync
import rmq.tracing
from rmq.testing import run_until_idle
from rmq.transaction.checkback import CheckBack
from tests.helpers import make_settings, wait_until
from tests.tracing.conftest import Spans

ROOT = Path(__file__).resolve().parents[2]


async def test_a_pull_receive_links_every_message(spans: Spans, opened: rmq.App) -> None:
    async with opened.pull_consumer("jobs", "reports", start="first") as pc:
        results = [await opened.send("jobs", n) for n in range(3)]
        msgs = await pc.receive(max_messages=10, wait=1)
        await pc.ack(*msgs)
    assert len(msgs) == 3
    assert all("traceparent" in m.properties for m in msgs)
    (receive,) = spans.named("receive jobs")
    assert receive.kind.name == "CONSUMER"
    assert receive.attributes["messaging.batch.message_count"] == 3
    assert receive.attributes["messaging.consumer.group.name"] == "reports"
    producers = spans.by_msg_id("send jobs")
    linked = {link.context.span_id for link in receive.links}
    assert linked == {producers[r.msg_id][0].context.span_id for r in results}


def test_the_blocking_client_sends_in_the_callers_trace(
    spans: Spans, settings: rmq.Settings
) -> None:
    with rmq.sync.App(settings) as client:
        client.send("orders", 0)  # the topic is known from here on
        parents: dict[str, int] = {}

        def in_a_request(k: int) -> None:
            with spans.tracer.start_as_current_span(f"request {k}") as request:
                ids = [
                    client.send("orders", {"k": k}).msg_id,  # from this thread
                    client.send_async("orders", {"k": k}).result(timeout=5).msg_id,  # the loop
                ]
                client.send_oneway("orders", {"k": k})
                client.flush()
                for msg_id in ids:
                    parents[msg_id] = request.get_span_context().span_id

        threads = [threading.Thread(target=in_a_request, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        producer = client.producer(group="shop")
        with spans.tracer.start_as_current_span("pay") as pay, producer.transaction() as tx:
            tx.send("payments", 1)
    by_msg = spans.by_msg_id("send orders")
    for msg_id, parent in parents.items():
        (span,) = by_msg[msg_id]
        assert span.parent is not None and span.parent.span_id == parent
    oneway = [s for s in spans.named("send orders") if s.parent is None]
    assert len(oneway) == 1  # only the first send was outside any request
    assert len(spans.named("send orders")) == 1 + 4 * 3  # no span for the check in the thread
    (pay_span,) = spans.named("pay")
    assert [e.name for e in pay_span.events] == ["rmq.transaction.commit"]
    (tx_send,) = spans.named("send payments")
    assert tx_send.parent is not None and tx_send.parent.span_id == pay.get_span_context().span_id


async def test_a_check_back_commit_is_a_span_of_its_own(
    spans: Spans, redis_url: str, namespace: str
) -> None:
    settings = make_settings(redis_url, namespace, transaction_check_immunity=0.1)
    async with rmq.App(settings) as app:
        producer = app.producer(group="shop")
        result = await producer.send_in_transaction(
            "payments", 1, execute=lambda msg, arg: rmq.TransactionState.UNKNOWN
        )
        checkback = CheckBack(app.context, "shop", lambda msg: rmq.TransactionState.COMMIT)
        async with anyio.create_task_group() as tg:
            tg.start_soon(checkback.run)
            await wait_until(lambda: bool(spans.named("commit payments")), what="a commit")
            tg.cancel_scope.cancel()
    (commit,) = spans.named("commit payments")
    assert commit.attributes["messaging.rmq.transaction.msg_ids"] == (result.msg_id,)


async def test_errors_of_plain_handlers_are_recorded(spans: Spans, app: rmq.App) -> None:
    @app.consumer("orders", group="billing", start="first", max_retries=0)
    def bill(msg: rmq.Message) -> None:  # runs in a worker thread
        raise KeyError("no such customer")

    async with app:
        await app.send("orders", 1)
    await run_until_idle(app)
    (span,) = spans.named("process orders")
    assert [e.name for e in span.events] == ["exception", "rmq.dead_letter"]
    assert span.events[0].attributes["exception.type"] == "KeyError"
    assert span.events[1].attributes["rmq.dead_letter.reason"] == "max_retries"


async def test_uninstrumented_sends_carry_no_trace_context(spans: Spans, opened: rmq.App) -> None:
    rmq.tracing.uninstrument()
    assert not rmq.tracing.instrumented()
    async with opened.pull_consumer("jobs", "g", start="first") as pc:
        await opened.send("jobs", 1, properties={"region": "eu"})
        (msg,) = await pc.receive(wait=1)
    assert msg.properties == {"region": "eu"}
    assert spans.exporter.get_finished_spans() == ()


def test_off_by_default_nothing_of_rmqs_tracing_is_imported(redis_url: str) -> None:
    script = textwrap.dedent(
        """
        import sys, anyio, rmq, rmq.sync
        from rmq.testing import run_until_idle
        from rmq.tracing import hooks

        async def main():
            app = rmq.App(redis_url=sys.argv[1], namespace="off", block_seconds=0.3)

            @app.consumer("t", group="g", start="first")
            async def handle(msg):
                pass

            async with app:
                await app.send("t", 1)
            await run_until_idle(app)

        anyio.run(main)
        with rmq.sync.App(redis_url=sys.argv[1], namespace="off") as client:
            client.send("t", 2)
        assert "rmq.tracing.otel" not in sys.modules
        assert hooks.on_send is hooks.on_handling is hooks.on_receive is None
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script, redis_url], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr
