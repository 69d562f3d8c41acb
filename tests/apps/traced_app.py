"""A traced worker app (`rmq worker run tests.apps.traced_app:app`): its startup hook configures
OpenTelemetry, an SDK tracer provider whose exporter appends each finished span as one JSON line
to the file `$TRACED_SPANS`, and turns rmq's tracing on; its shutdown hook flushes the provider.

Consumers: `orders/billing` (a body with `fail_once` fails its first attempt, `reject` is
rejected, `forward` sends a receipt), `receipts/mail` (a plain handler, in a thread),
`ledger/post` (orderly), `config/cache` (broadcasting) and `payments/settle`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import rmq
import rmq.tracing

app = rmq.App()


def span_doc(span: ReadableSpan) -> dict[str, Any]:
    """A span as JSON: ids in hex, kind, attributes, events, links."""
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
        "service": (span.resource.attributes or {}).get("service.name"),
    }


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_doc(s), default=list) + "\n" for s in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@app.on_startup
def start_tracing() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "traced-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["TRACED_SPANS"])))
    rmq.tracing.instrument(provider)
    app.state.provider = provider


@app.on_shutdown
def stop_tracing() -> None:
    app.state.provider.shutdown()


@app.consumer("orders", group="billing", start="first", retry=0.05)
async def bill(msg: rmq.Message) -> None:
    if msg.body.get("fail_once") and msg.reconsume_times == 0:
        raise ValueError("card declined")
    if msg.body.get("reject"):
        raise rmq.Reject("fraud suspected")
    if msg.body.get("forward"):
        await app.send("receipts", {"order": msg.body["id"]})


@app.consumer("receipts", group="mail", start="first")
def mail(msg: rmq.Message) -> None:
    pass


@app.consumer("ledger", group="post", mode="orderly", start="first")
async def post(msg: rmq.Message) -> None:
    pass


@app.consumer("config", group="cache", model="broadcasting", start="first")
async def refresh(msg: rmq.Message) -> None:
    pass


@app.consumer("payments", group="settle", start="first")
async def settle(msg: rmq.Message) -> None:
    pass
