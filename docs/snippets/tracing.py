"""OpenTelemetry: the consumer's span is a child of the producer's (run: python tracing.py).
Needs the SDK (pip install opentelemetry-sdk); a real service exports with OTLP instead."""

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import rmq
import rmq.tracing
from rmq.testing import run_until_idle

exporter = InMemorySpanExporter()

# --8<-- [start:instrument]
provider = TracerProvider()  # with your exporters: OTLP, Jaeger, the console, ...
provider.add_span_processor(SimpleSpanProcessor(exporter))
rmq.tracing.instrument(provider)  # or instrument(): OpenTelemetry's global provider
# --8<-- [end:instrument]

app = rmq.App()
tracer = provider.get_tracer("shop")


@app.consumer("orders", group="billing", start="first")
async def bill(msg: rmq.Message) -> None:
    assert "traceparent" in msg.properties  # W3C trace context travels in the properties


async def main() -> None:
    async with app:
        # --8<-- [start:send]
        with tracer.start_as_current_span("checkout"):
            await app.send("orders", {"id": 1})  # a PRODUCER span, child of "checkout"
        # --8<-- [end:send]
    await run_until_idle(app)  # as `rmq worker run` would: a CONSUMER span per handler call


anyio.run(main)
spans = {span.name: span for span in exporter.get_finished_spans()}
checkout, send, process = spans["checkout"], spans["send orders"], spans["process orders"]
assert send.parent is not None and send.parent.span_id == checkout.context.span_id
assert process.parent is not None and process.parent.span_id == send.context.span_id
assert process.context.trace_id == checkout.context.trace_id
assert process.attributes is not None and process.attributes["messaging.system"] == "rmq"
print("trace", f"{checkout.context.trace_id:032x}:", " -> ".join(spans))
