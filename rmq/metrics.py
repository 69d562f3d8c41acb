"""Prometheus metrics: every `rmq_*` metric and the instrumentation calls.

The only module that defines metrics. Three kinds:

- **Counted in-process** by producers and consumers through the calls below, meant to be made once
  per batch (a send round trip, a fetched batch, a flushed ack batch), not once per message. They
  work in prometheus_client's multiprocess mode: the worker runner sets `PROMETHEUS_MULTIPROC_DIR`
  for its children and serves one `/metrics` for all of them.
- **Read from Redis at scrape time** (`STATE_GAUGES`: lag, pending, oldest pending age, stream,
  delayed, retry, half-message and DLQ lengths) by `rmq.metrics_state.StateCollector`, once per
  Redis: in `rmq metrics serve` (or a worker run with `--export-state`), never once per worker.
- `rmq_build_info`, added by every `/metrics` endpoint (`rmq.metrics_export`), one per target.

Series with fixed label sets start at 0 when a topic or consumer is registered
(`register_topic`, `register_consumer`; each is also done on a topic's first event), so
`increase(...)` sees the first event and panels show 0 instead of "No data".

Labels are bounded: topic, group, and small fixed sets (status, result, reason, outcome, state).
Never message ids, keys, consumer names or exception text.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import enum
import math
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import Metric

__all__ = [
    "BUILD_INFO",
    "METRIC_NAMES",
    "STATE_GAUGES",
    "ConsumeResult",
    "ConsumerMeter",
    "consume_durations",
    "consumed",
    "dead_lettered",
    "delivery_latencies",
    "filtered",
    "flush_published",
    "in_flight",
    "payload_sizes",
    "published",
    "reclaimed",
    "register_consumer",
    "register_topic",
    "retried",
    "transactions",
    "trimmed",
]


class ConsumeResult(enum.StrEnum):
    """What became of a consumed message (the `result` label)."""

    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    REJECT = "reject"
    SKIP = "skip"


PUBLISH_STATUSES = ("ok", "error")
DEAD_LETTER_REASONS = ("max_retries", "max_deliveries", "rejected", "undecodable", "other")
TRANSACTION_OUTCOMES = ("commit", "rollback", "unknown", "discarded")
TRIM_STATES = ("acked", "unacked", "dead_letter")

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_LATENCY = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_PUBLISH = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BYTES = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

_EXPORT_SECONDS = 0.5
_EXPORT_MAX = 10_000


class _PublishTally:
    __slots__ = ("durations", "sent", "sizes")

    def __init__(self) -> None:
        self.sent = 0
        self.durations: list[float] = []
        self.sizes: list[int] = []


class _Deferred:
    """The producer's successful sends, tallied in plain Python and exported to prometheus_client
    within `_EXPORT_SECONDS`: by a timer on the running event loop (at once without one), before
    every collection of the default registry (this object is registered ahead of the metrics),
    at exit, and when a tally grows past `_EXPORT_MAX` observations. A send then costs a lock
    and two appends instead of five locked increments."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)  # the parent exports its own tallies
        atexit.register(self.export)

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.topics: dict[str, _PublishTally] = {}
        self.timer_loop: asyncio.AbstractEventLoop | None = None

    def record(self, topic: str, count: int, seconds: float | None, sizes: Iterable[int]) -> None:
        with self.lock:
            tally = self.topics.get(topic)
            if tally is None:
                tally = self.topics[topic] = _PublishTally()
            tally.sent += count
            if seconds is not None:
                tally.durations.append(seconds)
            tally.sizes.extend(sizes)
            full = len(tally.sizes) >= _EXPORT_MAX or len(tally.durations) >= _EXPORT_MAX
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or full:
            self.export()
        elif self.timer_loop is not loop:  # no timer pending on this loop yet
            self.timer_loop = loop
            loop.call_later(_EXPORT_SECONDS, self.export)

    def export(self) -> None:
        with self.lock:
            topics, self.topics = self.topics, {}
            self.timer_loop = None
        for topic, tally in topics.items():
            if topic not in _topics:
                register_topic(topic)
            if tally.sent:
                _child(PUBLISHED, topic, "ok").inc(tally.sent)
            if tally.durations:
                _observe_many(_child(PUBLISH_DURATION, topic), tally.durations)
            if tally.sizes:
                _observe_many(_child(PAYLOAD, topic), tally.sizes)

    def collect(self) -> Iterable[Metric]:
        """Called by the registry before it collects the metrics: export, yield nothing."""
        self.export()
        return ()


_deferred = _Deferred()
REGISTRY.register(_deferred)

PUBLISHED = Counter("rmq_messages_published", "Messages sent, by outcome.", ["topic", "status"])
PUBLISH_DURATION = Histogram(
    "rmq_publish_duration_seconds", "Duration of one send round trip (one script call per queue).",
    ["topic"], buckets=_PUBLISH,
)  # fmt: skip
PAYLOAD = Histogram(
    "rmq_message_payload_bytes", "Encoded size of sent message bodies.", ["topic"], buckets=_BYTES
)
CONSUMED = Counter(
    "rmq_messages_consumed", "Messages handled, by result.", ["topic", "group", "result"]
)
CONSUME_DURATION = Histogram(
    "rmq_consume_duration_seconds", "Handler run time.", ["topic", "group"], buckets=_SECONDS
)
DELIVERY_LATENCY = Histogram(
    "rmq_delivery_latency_seconds", "From a message's birth to the start of its handler.",
    ["topic", "group"], buckets=_LATENCY,
)  # fmt: skip
IN_FLIGHT = Gauge(
    "rmq_messages_in_flight", "Messages fetched and not yet acknowledged or given back.",
    ["topic", "group"], multiprocess_mode="livesum",
)  # fmt: skip
RECLAIMED = Counter(
    "rmq_messages_reclaimed", "Entries taken over from idle consumers (XAUTOCLAIM).",
    ["topic", "group"],
)  # fmt: skip
RETRIED = Counter(
    "rmq_messages_retried", "Messages scheduled for another attempt after a backoff.",
    ["topic", "group"],
)  # fmt: skip
DEAD_LETTERED = Counter(
    "rmq_messages_dead_lettered", "Messages moved to a dead-letter queue, by reason.",
    ["topic", "group", "reason"],
)  # fmt: skip
FILTERED = Counter(
    "rmq_messages_filtered", "Messages acknowledged without handling: the filter did not match.",
    ["topic", "group"],
)  # fmt: skip
TRANSACTIONS = Counter(
    "rmq_transactions", "Transactional (half) messages resolved, by outcome.", ["topic", "outcome"]
)
TRIMMED = Counter(
    "rmq_messages_trimmed",
    "Entries removed by retention: acked, unacked (by a hard cap), dead_letter (dlq_retention).",
    ["topic", "state"],
)

STATE_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rmq_stream_length": ("Messages stored in the topic's queue streams.", ("topic",)),
    "rmq_topic_queues": ("Queues (streams) of the topic.", ("topic",)),
    "rmq_delayed_messages": ("Delayed messages not yet due.", ("topic",)),
    "rmq_half_messages": ("Transactional half messages not yet committed.", ("topic",)),
    "rmq_consumer_lag": (
        "Messages not yet delivered to the group (absent while Redis cannot tell).",
        ("topic", "group"),
    ),
    "rmq_consumer_pending": ("Delivered, not yet acknowledged (PEL size).", ("topic", "group")),
    "rmq_oldest_pending_age_seconds": (
        "Age of the group's oldest pending message (0 when none).",
        ("topic", "group"),
    ),
    "rmq_retry_waiting_messages": ("Retries waiting for their backoff.", ("topic", "group")),
    "rmq_dlq_length": ("Messages in the group's dead-letter queues.", ("topic", "group")),
    "rmq_consumers": (
        "Live consumers of the group (their process beats; stopped ones are not counted).",
        ("topic", "group"),
    ),
    "rmq_redis_up": ("1 when the last read of Redis state succeeded.", ()),
    "rmq_state_read_seconds": ("How long the last read of Redis state took.", ()),
}
"""The gauges read from Redis at scrape time: name -> (help, labels)."""

BUILD_INFO = (
    "rmq_build_info",
    "rmq version (value 1), one per /metrics endpoint.",
    ("version", "python"),
)

_STATE_METRICS = {**STATE_GAUGES, BUILD_INFO[0]: BUILD_INFO[1:]}
"""The Redis-state gauges plus `rmq_build_info` (the older table, read by the docs' reference
generator); use `STATE_GAUGES` and `BUILD_INFO`."""

METRIC_NAMES: frozenset[str] = frozenset(
    {
        "rmq_messages_published_total", "rmq_publish_duration_seconds",
        "rmq_message_payload_bytes", "rmq_messages_consumed_total",
        "rmq_consume_duration_seconds", "rmq_delivery_latency_seconds", "rmq_messages_in_flight",
        "rmq_messages_reclaimed_total", "rmq_messages_retried_total",
        "rmq_messages_dead_lettered_total", "rmq_messages_filtered_total", "rmq_transactions_total",
        "rmq_messages_trimmed_total", BUILD_INFO[0],
        *STATE_GAUGES,
    }
)  # fmt: skip
"""Every metric rmq exposes (counters with their `_total` suffix; histograms without `_bucket`)."""

# ---------------------------------------------------------------------- instrumentation
# Each call resolves its label set once and caches the child: after the first call the cost is a
# dict lookup plus one increment (histograms: one increment per bucket touched).

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def _observe_many(child: Any, values: Iterable[float]) -> None:
    """Observe many values with one increment per touched bucket (falls back to `observe`)."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total_value = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total_value is None:
        for value in values:
            child.observe(value)
        return
    counts = [0] * len(bounds)
    total = 0.0
    for value in values:
        if math.isnan(value):
            continue
        counts[bisect.bisect_left(bounds, value)] += 1
        total += value
    if any(counts):
        total_value.inc(total)
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)


_topics: set[str] = set()
_trim_topics: set[str] = set()
_consumers: set[tuple[str, str]] = set()


def register_topic(topic: str) -> None:
    """Create a topic's producer series at 0: published by status, the round-trip and payload
    histograms, transactions by outcome.

    Done by the topic's first send (so an error series exists before the first error); call it
    at start to have them before the first send too.
    """
    if topic in _topics:
        return
    _topics.add(topic)
    for status in PUBLISH_STATUSES:
        _child(PUBLISHED, topic, status)
    _child(PUBLISH_DURATION, topic)
    _child(PAYLOAD, topic)
    for outcome in TRANSACTION_OUTCOMES:
        _child(TRANSACTIONS, topic, outcome)


def register_consumer(topic: str, group: str) -> None:
    """Create a consumer's series at 0: consumed by result, dead-lettered by reason, retried,
    reclaimed, filtered, in flight, the handler and delivery histograms, and the topic's
    trimmed-by-state counters (workers trim the topics they consume). Called when a consumer
    starts."""
    if (topic, group) in _consumers:
        return
    _consumers.add((topic, group))
    for result in ConsumeResult:
        _child(CONSUMED, topic, group, result.value)
    for reason in DEAD_LETTER_REASONS:
        _child(DEAD_LETTERED, topic, group, reason)
    for metric in (RECLAIMED, RETRIED, FILTERED, IN_FLIGHT, CONSUME_DURATION, DELIVERY_LATENCY):
        _child(metric, topic, group)
    _register_trims(topic)


def _register_trims(topic: str) -> None:
    if topic not in _trim_topics:
        _trim_topics.add(topic)
        for state in TRIM_STATES:
            _child(TRIMMED, topic, state)


def published(
    topic: str,
    status: str,
    count: int = 1,
    seconds: float | None = None,
    sizes: Iterable[int] = (),
) -> None:
    """`count` messages sent to `topic` ("ok" or "error"); `seconds`: that round trip's time;
    `sizes`: their encoded body sizes (the same as a `payload_sizes` call).

    Successes are tallied and exported within half a second (see `flush_published`).
    """
    if status == "ok":
        _deferred.record(topic, count, seconds, sizes)
        return
    if status not in PUBLISH_STATUSES:
        raise ValueError(f"status must be one of {PUBLISH_STATUSES}, got {status!r}")
    if topic not in _topics:
        register_topic(topic)
    _child(PUBLISHED, topic, status).inc(count)
    if seconds is not None:
        _child(PUBLISH_DURATION, topic).observe(seconds)
    if sizes:
        _observe_many(_child(PAYLOAD, topic), sizes)


def payload_sizes(topic: str, sizes: Iterable[int]) -> None:
    """Encoded body sizes of sent messages (one call per batch; tallied like `published`)."""
    _deferred.record(topic, 0, None, sizes)


def flush_published() -> None:
    """Export the tallied sends now (also done by a timer, before every scrape and at exit)."""
    _deferred.export()


def consumed(topic: str, group: str, result: ConsumeResult | str, count: int = 1) -> None:
    """`count` messages of `topic` handled by `group` with `result`."""
    _child(CONSUMED, topic, group, ConsumeResult(result).value).inc(count)


def consume_durations(topic: str, group: str, seconds: Iterable[float]) -> None:
    """Handler run times (one call per batch of finished handlers)."""
    _observe_many(_child(CONSUME_DURATION, topic, group), seconds)


def delivery_latencies(topic: str, group: str, seconds: Iterable[float]) -> None:
    """Birth-to-handler-start latencies (one call per batch of started handlers)."""
    _observe_many(_child(DELIVERY_LATENCY, topic, group), seconds)


def in_flight(topic: str, group: str, delta: int) -> None:
    """Messages fetched (+n) or acknowledged / given back (-n)."""
    _child(IN_FLIGHT, topic, group).inc(delta)


def reclaimed(topic: str, group: str, count: int) -> None:
    """Entries claimed from idle consumers."""
    _child(RECLAIMED, topic, group).inc(count)


def retried(topic: str, group: str, count: int = 1) -> None:
    """Messages scheduled for another attempt."""
    _child(RETRIED, topic, group).inc(count)


def dead_lettered(topic: str, group: str, reason: str, count: int = 1) -> None:
    """Messages dead-lettered; an unknown `reason` is counted as "other"."""
    label = reason if reason in DEAD_LETTER_REASONS else "other"
    if (topic, group) not in _consumers:
        register_consumer(topic, group)
    _child(DEAD_LETTERED, topic, group, label).inc(count)


def filtered(topic: str, group: str, count: int = 1) -> None:
    """Messages acknowledged unhandled because the consumer's filter did not match."""
    _child(FILTERED, topic, group).inc(count)


def transactions(topic: str, outcome: str, count: int = 1) -> None:
    """Half messages resolved: commit, rollback, unknown (checked again later) or discarded."""
    if outcome not in TRANSACTION_OUTCOMES:
        raise ValueError(f"outcome must be one of {TRANSACTION_OUTCOMES}, got {outcome!r}")
    if topic not in _topics:
        register_topic(topic)
    _child(TRANSACTIONS, topic, outcome).inc(count)


def trimmed(topic: str, removed: int, removed_unacked: int = 0, dead_letters: int = 0) -> None:
    """Entries removed by retention (`removed_unacked` of them by a hard cap), and dead letters
    removed by `dlq_retention`."""
    _register_trims(topic)
    if dead_letters:
        _child(TRIMMED, topic, "dead_letter").inc(dead_letters)
    if removed_unacked:
        _child(TRIMMED, topic, "unacked").inc(removed_unacked)
    if removed > removed_unacked:
        _child(TRIMMED, topic, "acked").inc(removed - removed_unacked)


class ConsumerMeter:
    """A consumer's per-message observations, published once per batch by `flush()`.

    Recording is a list append or a dict increment, so it can sit on the hot path:

    ```python
    meter = ConsumerMeter(topic, group)
    meter.started(born_ms)                    # when a handler starts
    meter.finished(ConsumeResult.ACK, 0.012)  # when it returns (or raises)
    meter.flush()                             # with each batch of acks / outcomes
    ```
    """

    __slots__ = ("_acked", "_durations", "_latencies", "_results", "group", "topic")

    def __init__(self, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self._latencies: list[float] = []
        self._durations: list[float] = []
        self._results: dict[ConsumeResult, int] = {}
        self._acked = 0
        register_consumer(topic, group)

    def started(self, born_ms: int, now: float | None = None) -> None:
        """A handler starts on a message born at `born_ms` (epoch ms)."""
        self._latencies.append((now if now is not None else time.time()) - born_ms / 1000)

    def finished(self, result: ConsumeResult, seconds: float | None = None) -> None:
        """A message's outcome, and its handler's run time when it ran."""
        self._results[result] = self._results.get(result, 0) + 1
        if seconds is not None:
            self._durations.append(seconds)

    def acked(self, seconds: float) -> None:
        """Shorthand for `finished(ConsumeResult.ACK, seconds)`, the common case."""
        self._acked += 1
        self._durations.append(seconds)

    def flush(self) -> None:
        """Publish what was recorded since the last flush."""
        if self._acked:
            acked, self._acked = self._acked, 0
            consumed(self.topic, self.group, ConsumeResult.ACK, acked)
        if self._latencies:
            latencies, self._latencies = self._latencies, []
            delivery_latencies(self.topic, self.group, latencies)
        if self._durations:
            durations, self._durations = self._durations, []
            consume_durations(self.topic, self.group, durations)
        if self._results:
            results, self._results = self._results, {}
            for result, count in results.items():
                consumed(self.topic, self.group, result, count)
