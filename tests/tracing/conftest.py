"""An in-memory span exporter on a provider of the test's own, with rmq's tracing on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import rmq.tracing


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def by_msg_id(self, prefix: str) -> dict[str, list[ReadableSpan]]:
        out: dict[str, list[ReadableSpan]] = {}
        for span in self.named(prefix):
            msg_id = str((span.attributes or {})["messaging.message.id"])
            out.setdefault(msg_id, []).append(span)
        return out


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    rmq.tracing.instrument(recorded.provider)
    yield recorded
    rmq.tracing.uninstrument()
    recorded.provider.shutdown()
