"""The Redis-state gauges of `/metrics`: lag, pending, oldest pending age, queue lengths.

`StateCollector` reads every topic of the namespace at scrape time, in a few pipelined round
trips (XLEN, XINFO GROUPS and CONSUMERS, `XPENDING key group - + 1`, ZCARD), whatever the number
of queues. `rmq_consumers` counts a group's live consumers only (their app beats: `rmq.health`).
These gauges describe Redis, not a process: serve them once per Redis (`rmq metrics serve`), or
every deployment that serves them adds a copy (dashboards aggregate with `max by` to stay right).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from .context import Context
from .metrics import STATE_GAUGES
from .state import entry_ms, read_queues, server_ms

__all__ = ["StateCollector"]

log = logging.getLogger("rmq.metrics")


def _family(name: str) -> GaugeMetricFamily:
    doc, labels = STATE_GAUGES[name]
    return GaugeMetricFamily(name, doc, labels=list(labels))


class StateCollector:
    """Reads topic and group state from Redis for `/metrics` (run one per Redis, not per worker).

    A scrape reads at most `max_queues` queues (topics in name order), in a few pipelined round
    trips; reads within `min_interval` seconds of the last one reuse its result.
    """

    def __init__(self, ctx: Context, *, max_queues: int = 4096, min_interval: float = 1.0) -> None:
        self.ctx = ctx
        self.max_queues = max_queues
        self.min_interval = min_interval
        self._last: tuple[float, list[Metric]] | None = None

    async def collect(self) -> list[Metric]:
        """The state metrics now (or from the last read, if it is recent enough)."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.min_interval:
            return self._last[1]
        families = await self._read()
        self._last = (time.monotonic(), families)
        return families

    async def _read(self) -> list[Metric]:
        started = time.perf_counter()
        up = _family("rmq_redis_up")
        try:
            families = await self._read_state()
        except Exception as exc:
            log.warning("cannot read Redis state for metrics: %r", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        took = _family("rmq_state_read_seconds")
        took.add_metric([], time.perf_counter() - started)
        return [*families, up, took]

    async def _read_state(self) -> list[Metric]:
        topics = []
        budget = self.max_queues
        for info in await self.ctx.topics.list():
            if info.queues > budget:
                log.warning("metrics: more than %d queues; the rest are left out", self.max_queues)
                break
            topics.append(info)
            budget -= info.queues
        queues = await read_queues(self.ctx, topics)
        now = await server_ms(self.ctx.conn.commands)
        fams = {name: _family(name) for name, (_, labels) in STATE_GAUGES.items() if labels}
        per_topic: dict[str, list[int]] = {t.name: [0, 0, 0, t.queues] for t in topics}
        per_group: dict[tuple[str, str], list[Any]] = {}
        for q in queues:
            totals = per_topic[q.topic]
            totals[0] += q.length
            totals[1] += q.delayed
            totals[2] += q.half
            for g in q.groups:
                row = per_group.setdefault((q.topic, g.group), [0, 0, 0.0, 0, 0, set()])
                row[0] = None if row[0] is None or g.lag is None else row[0] + g.lag
                row[1] += g.pending
                if g.oldest_pending_id is not None:
                    row[2] = max(row[2], (now - entry_ms(g.oldest_pending_id)) / 1000)
                row[3] += g.retry_waiting
                row[4] += g.dlq_length
                row[5].update(g.live_names)
        for topic, (length, delayed, half, count) in per_topic.items():
            fams["rmq_stream_length"].add_metric([topic], length)
            fams["rmq_delayed_messages"].add_metric([topic], delayed)
            fams["rmq_half_messages"].add_metric([topic], half)
            fams["rmq_topic_queues"].add_metric([topic], count)
        for (topic, group), (lag, pending, age, retry, dlq, consumers) in per_group.items():
            labels = [topic, group]
            if lag is not None:
                fams["rmq_consumer_lag"].add_metric(labels, lag)
            fams["rmq_consumer_pending"].add_metric(labels, pending)
            fams["rmq_oldest_pending_age_seconds"].add_metric(labels, max(0.0, age))
            fams["rmq_retry_waiting_messages"].add_metric(labels, retry)
            fams["rmq_dlq_length"].add_metric(labels, dlq)
            fams["rmq_consumers"].add_metric(labels, len(consumers))
        return list(fams.values())
