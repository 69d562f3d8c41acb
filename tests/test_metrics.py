"""rmq.metrics: the instrumentation API, series that start at 0, multiprocess aggregation, the
Redis-state collector.

The push consumer's and producer's hot-path hooks are wired elsewhere; here the API they call is
tested directly (in this process, and in child processes in multiprocess mode). Serving
`/metrics` (formats, gzip, workers, producers) is tested in test_metrics_http.py.
"""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import rmq
from rmq import metrics
from rmq.context import Context
from rmq.embedded import free_port
from rmq.keys import NamespaceKeys
from rmq.metrics_export import process_dead, render
from rmq.metrics_state import StateCollector
from rmq.state import half_key
from tests.helpers import make_settings


@pytest.fixture
def topic() -> str:
    """A topic label of its own: the default registry is shared by the whole test session."""
    return f"t{uuid.uuid4().hex[:8]}"


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def parse(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters(topic: str) -> None:
    metrics.register_topic(topic)
    assert value("rmq_messages_published_total", topic=topic, status="error") == 0
    metrics.published(topic, "ok", 5, seconds=0.002)
    metrics.published(topic, "ok", 3, seconds=0.004)
    metrics.published(topic, "error", 1)
    assert value("rmq_messages_published_total", topic=topic, status="ok") == 8
    assert value("rmq_messages_published_total", topic=topic, status="error") == 1
    assert value("rmq_publish_duration_seconds_count", topic=topic) == 2  # one per round trip
    assert value("rmq_publish_duration_seconds_sum", topic=topic) == pytest.approx(0.006)

    metrics.register_consumer(topic, "g")
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="skip") == 0
    metrics.consumed(topic, "g", metrics.ConsumeResult.ACK, 10)
    metrics.consumed(topic, "g", "retry")
    metrics.reclaimed(topic, "g", 4)
    metrics.retried(topic, "g", 2)
    metrics.filtered(topic, "g", 3)
    metrics.dead_lettered(topic, "g", "max_retries")
    metrics.dead_lettered(topic, "g", "something new", 2)
    metrics.transactions(topic, "commit", 2)
    metrics.in_flight(topic, "g", 7)
    metrics.in_flight(topic, "g", -5)
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="ack") == 10
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="retry") == 1
    assert value("rmq_messages_reclaimed_total", topic=topic, group="g") == 4
    assert value("rmq_messages_retried_total", topic=topic, group="g") == 2
    assert value("rmq_messages_filtered_total", topic=topic, group="g") == 3
    assert value("rmq_messages_dead_lettered_total", topic=topic, group="g", reason="other") == 2
    dead = value("rmq_messages_dead_lettered_total", topic=topic, group="g", reason="max_retries")
    assert dead == 1
    assert value("rmq_transactions_total", topic=topic, outcome="commit") == 2
    assert value("rmq_messages_in_flight", topic=topic, group="g") == 2


def test_fixed_label_sets_start_at_zero(topic: str) -> None:
    """Registering a topic or a consumer creates every series of its fixed label sets at 0, so
    `increase(...)` sees the first event and panels show 0 instead of "No data"."""
    metrics.register_topic(topic)
    for status in metrics.PUBLISH_STATUSES:
        assert value("rmq_messages_published_total", topic=topic, status=status) == 0
    for outcome in metrics.TRANSACTION_OUTCOMES:
        assert value("rmq_transactions_total", topic=topic, outcome=outcome) == 0
    assert value("rmq_publish_duration_seconds_count", topic=topic) == 0
    assert value("rmq_message_payload_bytes_count", topic=topic) == 0

    metrics.register_consumer(topic, "g")
    labels = {"topic": topic, "group": "g"}
    for result in metrics.ConsumeResult:
        assert value("rmq_messages_consumed_total", **labels, result=result.value) == 0
    for reason in metrics.DEAD_LETTER_REASONS:
        assert value("rmq_messages_dead_lettered_total", **labels, reason=reason) == 0
    for name in ("retried", "reclaimed", "filtered"):
        assert value(f"rmq_messages_{name}_total", **labels) == 0
    assert value("rmq_messages_in_flight", **labels) == 0
    assert value("rmq_consume_duration_seconds_count", **labels) == 0
    assert value("rmq_delivery_latency_seconds_count", **labels) == 0
    for state in metrics.TRIM_STATES:  # workers trim the topics they consume
        assert value("rmq_messages_trimmed_total", topic=topic, state=state) == 0


def test_a_first_event_creates_its_siblings_at_zero(topic: str) -> None:
    """A series set nobody registered is created whole by its first event: the next event of
    any other label value is then seen by `increase(...)`."""
    metrics.published(f"{topic}p", "error")
    assert value("rmq_messages_published_total", topic=f"{topic}p", status="error") == 1
    assert value("rmq_messages_published_total", topic=f"{topic}p", status="ok") == 0
    metrics.published(f"{topic}q", "ok", 2)
    metrics.flush_published()
    assert value("rmq_messages_published_total", topic=f"{topic}q", status="error") == 0
    metrics.transactions(f"{topic}t", "commit")
    assert value("rmq_transactions_total", topic=f"{topic}t", outcome="discarded") == 0
    metrics.trimmed(f"{topic}r", 5)
    assert value("rmq_messages_trimmed_total", topic=f"{topic}r", state="acked") == 5
    assert value("rmq_messages_trimmed_total", topic=f"{topic}r", state="unacked") == 0
    metrics.dead_lettered(f"{topic}d", "g", "rejected")
    dead = {"topic": f"{topic}d", "group": "g"}
    assert value("rmq_messages_dead_lettered_total", **dead, reason="rejected") == 1
    assert value("rmq_messages_dead_lettered_total", **dead, reason="max_retries") == 0


def test_bad_label_values_are_refused(topic: str) -> None:
    with pytest.raises(ValueError):
        metrics.consumed(topic, "g", "exploded")
    with pytest.raises(ValueError):
        metrics.published(topic, "maybe")
    with pytest.raises(ValueError):
        metrics.transactions(topic, "perhaps")


def test_histograms_observe_a_batch_like_one_by_one(topic: str) -> None:
    values = [0.0001, 0.005, 0.0051, 0.3, 2.0, 45.0, 1e6, float("nan")]
    metrics.consume_durations(topic, "batch", values)
    for v in values:
        if v == v:  # NaN is ignored by the batch call; observe() would count it in no bucket
            metrics.CONSUME_DURATION.labels(topic, "single").observe(v)
    for le in ["0.005", "0.01", "0.5", "2.5", "60.0", "+Inf"]:
        batch = value("rmq_consume_duration_seconds_bucket", topic=topic, group="batch", le=le)
        single = value("rmq_consume_duration_seconds_bucket", topic=topic, group="single", le=le)
        assert batch == single, le
    for suffix in ("_count", "_sum"):
        name = f"rmq_consume_duration_seconds{suffix}"
        assert value(name, topic=topic, group="batch") == value(name, topic=topic, group="single")
    metrics.delivery_latencies(topic, "g", [0.02, 0.03])
    assert value("rmq_delivery_latency_seconds_count", topic=topic, group="g") == 2
    metrics.payload_sizes(topic, [10, 5000, 5_000_000])
    assert value("rmq_message_payload_bytes_bucket", topic=topic, le="4096.0") == 1
    assert value("rmq_message_payload_bytes_count", topic=topic) == 3


def test_consumer_meter_publishes_per_batch(topic: str) -> None:
    meter = metrics.ConsumerMeter(topic, "g")
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="ack") == 0
    meter.started(1_000_000, now=1_000.25)
    meter.started(1_000_000, now=1_001.0)
    meter.finished(metrics.ConsumeResult.ACK, 0.01)
    meter.finished(metrics.ConsumeResult.ACK, 0.02)
    meter.finished(metrics.ConsumeResult.SKIP)
    meter.acked(0.03)  # the shorthand for finished(ACK, ...)
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="ack") == 0
    meter.flush()
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="ack") == 3
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="skip") == 1
    assert value("rmq_consume_duration_seconds_count", topic=topic, group="g") == 3
    assert value("rmq_delivery_latency_seconds_sum", topic=topic, group="g") == pytest.approx(1.25)
    meter.flush()  # nothing new: nothing changes
    assert value("rmq_messages_consumed_total", topic=topic, group="g", result="ack") == 3


async def test_sends_are_tallied_and_exported_soon(topic: str) -> None:
    """On an event loop, successful sends reach prometheus_client by a timer, or at once when
    the registry is collected (a scrape) or `flush_published()` is called."""
    child = metrics.PUBLISHED.labels(topic, "ok")
    metrics.published(topic, "ok", 2, seconds=0.001, sizes=[10, 20])
    metrics.payload_sizes(topic, [5000])
    assert child._value.get() == 0  # tallied, not exported yet
    assert value("rmq_messages_published_total", topic=topic, status="ok") == 2  # scrape exports
    assert value("rmq_message_payload_bytes_count", topic=topic) == 3
    assert value("rmq_publish_duration_seconds_count", topic=topic) == 1
    metrics.published(topic, "ok", 3, seconds=0.002)
    await asyncio.sleep(0.8)  # the timer
    assert child._value.get() == 5
    metrics.published(topic, "ok", 1)
    metrics.flush_published()
    assert child._value.get() == 6
    metrics.published(topic, "error", 1, seconds=0.5)  # failures are not deferred
    assert metrics.PUBLISHED.labels(topic, "error")._value.get() == 1


def test_metric_names_are_complete_and_follow_the_rules() -> None:
    defined = {m._name for m in metrics.__dict__.values() if hasattr(m, "_name")}
    for name in defined:
        assert name.startswith("rmq_")
    counters = {
        f"{m._name}_total" for m in metrics.__dict__.values() if type(m).__name__ == "Counter"
    }
    assert counters <= metrics.METRIC_NAMES
    for name in metrics.METRIC_NAMES:
        assert name.startswith("rmq_")
        assert "millisecond" not in name


CHILD = """
import asyncio
import sys
from rmq import metrics
topic, n = sys.argv[1], int(sys.argv[2])
metrics.consumed(topic, "g", "ack", n)
metrics.in_flight(topic, "g", n)
metrics.consume_durations(topic, "g", [0.01] * n)
metrics.register_consumer(topic, "idle")


async def send() -> None:  # tallied on a loop that is gone before the timer: exported at exit
    metrics.published(topic, "ok", n, seconds=0.001, sizes=[100] * n)


asyncio.run(send())
"""


async def test_multiprocess_mode_aggregates_children(tmp_path: Path, topic: str) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    pids = []
    for n in (3, 4):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD + "print(__import__('os').getpid())", topic, str(n)],
            env=env, capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        pids.append(int(proc.stdout))
    got = parse(await render(directory=str(tmp_path)))
    labels = (("group", "g"), ("result", "ack"), ("topic", topic))
    assert got[("rmq_messages_consumed_total", labels)] == 7
    assert got[("rmq_consume_duration_seconds_count", (("group", "g"), ("topic", topic)))] == 7
    assert got[("rmq_messages_in_flight", (("group", "g"), ("topic", topic)))] == 7
    assert got[("rmq_messages_published_total", (("status", "ok"), ("topic", topic)))] == 7
    assert got[("rmq_message_payload_bytes_count", (("topic", topic),))] == 7
    idle = (("group", "idle"), ("reason", "max_deliveries"), ("topic", topic))
    assert got[("rmq_messages_dead_lettered_total", idle)] == 0  # registered at 0 in a child
    assert got[("rmq_messages_published_total", (("status", "error"), ("topic", topic)))] == 0
    build = (("python", platform.python_version()), ("version", rmq.__version__))
    assert got[("rmq_build_info", build)] == 1
    assert any(name == "process_resident_memory_bytes" for name, _ in got)  # the serving process
    process_dead(pids[0], str(tmp_path))
    got = parse(await render(directory=str(tmp_path)))
    assert got[("rmq_messages_in_flight", (("group", "g"), ("topic", topic)))] == 4  # livesum
    assert got[("rmq_messages_consumed_total", labels)] == 7  # counters of dead processes stay


async def test_state_collector_matches_redis(opened: rmq.App, r: redis.Redis) -> None:
    app = opened
    await app.admin.create_topic("orders", queues=2)
    async with app.pull_consumer("orders", "billing", start="first") as pc:
        async with app.pull_consumer("orders", "audit", start="first"):
            pass
        for n in range(7):
            await app.send("orders", n)
        got_msgs = await pc.receive(max_messages=3, wait=1)
    keys = NamespaceKeys(app.settings.namespace)
    q0, q1 = keys.queue("orders", 0), keys.queue("orders", 1)
    r.xadd(q0.dlq("billing"), {"reason": "x"})
    r.xadd(q1.dlq("billing"), {"reason": "y"})
    r.zadd(q0.delay, {"m1": 1, "m2": 2})
    r.zadd(half_key(q1), {"h1": 1})
    r.zadd(q1.retry("billing"), {"r1": 1})
    due = q1.retry_stream("billing")  # retries due now: read by the group beside the queue
    r.xgroup_create(due, "billing", "0", mkstream=True)
    r.xadd(due, {"d": "x"})
    r.xadd(due, {"d": "y"})
    r.xreadgroup("billing", "c", {due: ">"}, count=1)

    state = StateCollector(app.context, min_interval=0)
    got = parse(await render(state, in_process=False))
    t = (("topic", "orders"),)
    billing = (("group", "billing"), ("topic", "orders"))
    audit = (("group", "audit"), ("topic", "orders"))
    lag = {
        g: sum(
            int(next(i for i in r.xinfo_groups(q.stream) if i["name"].decode() == g)["lag"])
            for q in (q0, q1)
        )
        for g in ("billing", "audit")
    }
    assert got[("rmq_consumer_lag", billing)] == lag["billing"] + 1 == 7 - len(got_msgs) + 1
    assert got[("rmq_consumer_lag", audit)] == lag["audit"] == 7
    assert got[("rmq_consumer_pending", billing)] == len(got_msgs) + 1
    assert got[("rmq_consumer_pending", audit)] == 0
    assert got[("rmq_dlq_length", billing)] == r.xlen(q0.dlq("billing")) + r.xlen(q1.dlq("billing"))
    assert got[("rmq_dlq_length", audit)] == 0
    assert got[("rmq_stream_length", t)] == 7
    assert got[("rmq_topic_queues", t)] == 2
    assert got[("rmq_delayed_messages", t)] == 2
    assert got[("rmq_half_messages", t)] == 1
    assert got[("rmq_retry_waiting_messages", billing)] == 1
    assert 0 <= got[("rmq_oldest_pending_age_seconds", billing)] < 60
    assert got[("rmq_oldest_pending_age_seconds", audit)] == 0
    assert got[("rmq_redis_up", ())] == 1
    for name, _ in got:
        base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        if name.startswith("rmq_"):
            assert name in metrics.METRIC_NAMES or base in metrics.METRIC_NAMES, name
    assert not any(name == "rmq_messages_consumed_total" for name, _ in got)  # in_process=False


async def test_state_collector_when_redis_is_down(namespace: str) -> None:
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", namespace, connect_timeout=0.2)
    ctx = Context.create(settings)
    try:
        got = parse(await render(StateCollector(ctx, min_interval=0), in_process=False))
    finally:
        await ctx.conn.close()
    assert got[("rmq_redis_up", ())] == 0
    assert not any(name == "rmq_stream_length" for name, _ in got)
    assert any(name == "rmq_build_info" for name, _ in got)


async def test_state_reads_are_reused_within_min_interval(opened: rmq.App) -> None:
    state = StateCollector(opened.context, min_interval=60)
    first = await state.collect()
    await opened.send("orders", "x")
    assert await state.collect() is first
