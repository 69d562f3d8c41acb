"""OpenTelemetry spans for rmq, following the OpenTelemetry messaging semantic conventions.

- **send**: a PRODUCER span `send <topic>` per message, made when the message is encoded (it
  starts and ends there; the round trip it shares with other messages is in the metrics). Its
  context goes into the message properties with the global propagator (W3C `traceparent`,
  `tracestate` and `baggage` by default); a delayed message also gets `rmq-delayed: 1`.
- **process**: a CONSUMER span `process <topic>` per handler call, in every consumer mode
  (concurrently, orderly, broadcasting), a child of the producer's span; for a delayed message
  it starts a trace of its own with a link to the producer's span instead (the message was
  meant to be handled later, as the conventions advise). The handler runs with the span (and
  the producer's baggage) current, so what it sends is a child of it. Its outcome is an
  attribute (`messaging.rmq.outcome`); a retry (`rmq.retry`: delay and attempt), a skip and a
  dead letter (`rmq.dead_letter`: reason and error) are span events, and the span's status is
  ERROR for both; an exception the handler raised is recorded (`exception` event).
- **receive**: a CONSUMER span `receive <topic>` per pull-consumer `receive` that returns
  messages, with a link to each message's producer span (a batch has no single parent).
- **transactions**: a commit or rollback is an event (`rmq.transaction.commit` /
  `rmq.transaction.rollback`) on the current span, or, when there is none (a check-back), a span
  `commit <topic>` / `rollback <topic>` of its own.

Attributes: `messaging.system` (`rmq`), `messaging.operation.type` (send, process, receive),
`messaging.operation.name`, `messaging.destination.name` (the topic),
`messaging.destination.partition.id` (the queue), `messaging.consumer.group.name`,
`messaging.message.id`, `messaging.batch.message_count` (receive), and rmq's own
`messaging.rmq.message.delivery_count`, `.reconsume_times`, `.tag`, `.keys`, `.offset`,
`.delayed`, `messaging.rmq.consume_mode` and `messaging.rmq.message_model`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from .._version import __version__
from ..errors import HandlerSignal
from .hooks import QUIET

if TYPE_CHECKING:
    from ..consumer.handling import Handling, Outcome
    from ..consumer.pull import PullConsumer
    from ..message import Message
    from ..outgoing import Outgoing

__all__ = ["DELAYED", "SYSTEM", "Tracing"]

SYSTEM = "rmq"
DELAYED = "rmq-delayed"
"""The property that marks a delayed message: its consumer span links to the producer's."""
_SCHEMA = "https://opentelemetry.io/schemas/1.27.0"
_ERROR_TEXT = 500


class Tracing:
    """The hooks of `rmq.tracing.hooks`, made with one tracer."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(
            "rmq", __version__, tracer_provider=tracer_provider, schema_url=_SCHEMA
        )

    # ------------------------------------------------------------------ producing

    def on_send(
        self, out: Outgoing, msg_id: str, properties: dict[str, str] | None
    ) -> dict[str, str] | None:
        if QUIET.get():
            return properties
        delayed = out.delay is not None or out.deliver_at is not None or out.delay_level is not None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": out.topic,
            "messaging.message.id": msg_id,
        }
        if out.tag:
            attributes["messaging.rmq.message.tag"] = out.tag
        if out.keys:
            attributes["messaging.rmq.message.keys"] = list(out.keys)
        if delayed:
            attributes["messaging.rmq.message.delayed"] = True
        span = self.tracer.start_span(
            f"send {out.topic}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        carrier = dict(properties) if properties else {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if delayed:
            carrier[DELAYED] = "1"
        span.end()
        return carrier

    def on_transaction(self, what: str, topic: str, queue_id: int, msg_ids: Sequence[str]) -> None:
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(queue_id),
            "messaging.rmq.transaction.msg_ids": list(msg_ids),
        }
        current = trace.get_current_span()
        if current.is_recording():
            current.add_event(f"rmq.transaction.{what}", attributes)
            return
        with self.tracer.start_as_current_span(
            f"{what} {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            span.add_event(f"rmq.transaction.{what}", attributes)

    # ------------------------------------------------------------------ consuming

    def on_handling(self, handling: Handling) -> None:
        """Wrap the handling's calls in CONSUMER spans (and its handler, to record errors)."""
        spec = handling.spec
        base: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": spec.topic,
            "messaging.consumer.group.name": spec.group,
            "messaging.rmq.consume_mode": spec.mode,
            "messaging.rmq.message_model": spec.model,
        }
        handling.handle = functools.partial(  # type: ignore[method-assign]
            self._process, handling.handle, f"process {spec.topic}", base
        )
        handler: Any = handling._handler
        if spec.is_async:

            async def recorded_async(msg: Message) -> None:
                try:
                    await handler(msg)
                except BaseException as exc:
                    _record(exc)
                    raise

            handling._handler = recorded_async
        else:

            def recorded(msg: Message) -> None:
                try:
                    handler(msg)
                except BaseException as exc:
                    _record(exc)
                    raise

            handling._handler = recorded

    async def _process(
        self,
        handle: Callable[[Message], Awaitable[Outcome]],
        name: str,
        base: dict[str, Any],
        msg: Message,
    ) -> Outcome:
        parent, links = _parent(msg)
        attributes = {**base, **_message_attributes(msg)}
        span = self.tracer.start_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            outcome = await handle(msg)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: handling stopped"))
            span.end()
            raise
        finally:
            otel_context.detach(token)
        _outcome(span, msg, outcome)
        span.end()
        return outcome

    def on_receive(self, consumer: PullConsumer, messages: Sequence[Message]) -> None:
        links = []
        for msg in messages:
            span_context = _producer_span(msg)
            if span_context is not None:
                links.append(Link(span_context, {"messaging.message.id": msg.msg_id}))
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "receive",
            "messaging.operation.name": "receive",
            "messaging.destination.name": consumer.topic,
            "messaging.consumer.group.name": consumer.group,
            "messaging.batch.message_count": len(messages),
        }
        span = self.tracer.start_span(
            f"receive {consumer.topic}", kind=SpanKind.CONSUMER, attributes=attributes,
            links=links,
        )  # fmt: skip
        span.end()


def _message_attributes(msg: Message) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.message.id": msg.msg_id,
        "messaging.destination.partition.id": str(msg.queue_id),
        "messaging.rmq.message.offset": msg.offset,
        "messaging.rmq.message.delivery_count": msg.delivery_count,
        "messaging.rmq.message.reconsume_times": msg.reconsume_times,
    }
    if msg.tag:
        attributes["messaging.rmq.message.tag"] = msg.tag
    if msg.keys:
        attributes["messaging.rmq.message.keys"] = list(msg.keys)
    if msg.properties.get(DELAYED) == "1":
        attributes["messaging.rmq.message.delayed"] = True
    return attributes


def _parent(msg: Message) -> tuple[otel_context.Context, list[Link]]:
    """The context to start a consumer span in: the producer's (a child), or, for a delayed
    message, a new trace (with the producer's baggage) linked to the producer's span."""
    extracted = propagate.extract(msg.properties)
    if msg.properties.get(DELAYED) != "1":
        return extracted, []
    producer = trace.get_current_span(extracted).get_span_context()
    root = trace.set_span_in_context(trace.INVALID_SPAN, extracted)
    return root, [Link(producer)] if producer.is_valid else []


def _producer_span(msg: Message) -> trace.SpanContext | None:
    span_context = trace.get_current_span(propagate.extract(msg.properties)).get_span_context()
    return span_context if span_context.is_valid else None


def _record(exc: BaseException) -> None:
    """An error the handler raised, on the current (consumer) span; handler signals (Retry,
    Reject, Skip) are outcomes, not errors."""
    if isinstance(exc, HandlerSignal) or not isinstance(exc, Exception | SystemExit):
        return
    trace.get_current_span().record_exception(exc)


def _outcome(span: trace.Span, msg: Message, outcome: Outcome) -> None:
    verdict = outcome.verdict.value
    span.set_attribute("messaging.rmq.outcome", verdict)
    if verdict == "retry":
        span.add_event("rmq.retry", {"rmq.retry.delay_seconds": outcome.delay,
                                     "rmq.retry.attempt": msg.reconsume_times + 1})  # fmt: skip
        span.set_status(Status(StatusCode.ERROR, "the handler failed; retried later"))
    elif verdict == "dead_letter":
        dead = outcome.dead
        reason = dead.reason if dead is not None else "unknown"
        error = (dead.error or "") if dead is not None else ""
        event = {"rmq.dead_letter.reason": reason, "rmq.dead_letter.error": error[:_ERROR_TEXT]}
        span.add_event("rmq.dead_letter", event)
        span.set_status(Status(StatusCode.ERROR, f"dead-lettered ({reason})"))
    elif verdict == "skip":
        span.add_event("rmq.skip")
