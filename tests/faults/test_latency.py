"""50-200 ms of latency each way (a round trip of 0.1-0.4 s): throughput drops, nothing times out,
nothing is delivered twice (the visibility timeout is well above a round trip)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest

import rmq
from tests.faults import Handled, Report, fault_settings
from tests.helpers import running, wait_until
from tests.proxy import FaultProxy

pytestmark = pytest.mark.timeout(90)

TOPIC, GROUP, MESSAGES, SENDERS = "slow", "g", 150, 25


async def produce_and_consume(url: str, namespace: str, label: str) -> tuple[Report, rmq.App]:
    settings = fault_settings(
        url, namespace, socket_timeout=2.0, visibility_timeout=5.0, default_queues=4
    )
    report = Report(label)
    handled = Handled()
    acknowledged: set[str] = set()
    app = rmq.App(settings)

    @app.consumer(TOPIC, group=GROUP, start="first")
    async def handle(msg: rmq.Message) -> None:
        handled.record(msg)

    async with app:
        started = time.monotonic()

        async def sender(first: int) -> None:
            for n in range(first, MESSAGES, SENDERS):
                acknowledged.add((await app.send(TOPIC, n)).msg_id)

        async with anyio.create_task_group() as tg:
            for first in range(SENDERS):
                tg.start_soon(sender, first)
        send_seconds = time.monotonic() - started
        async with running(app):
            started = time.monotonic()
            await wait_until(lambda: handled.ids >= acknowledged, 60, "every message")
            consume_seconds = time.monotonic() - started
            await anyio.sleep(1.0)  # a duplicate would come back by now (claim_interval 0.3 s)
            stats = app.running_consumers[0].stats
    report.sent = MESSAGES
    report.count(acknowledged, handled)
    report.extra.update(
        send_per_second=round(MESSAGES / send_seconds),
        consume_per_second=round(MESSAGES / consume_seconds),
        reclaimed=stats.reclaimed,
        failed=stats.failed,
    )
    return report, app


async def test_latency_slows_but_loses_and_repeats_nothing(
    proxy: FaultProxy, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    baseline, _ = await produce_and_consume(proxy.url, namespace + "a", "no added latency")
    proxy.delay(0.05, 0.2)
    with caplog.at_level(logging.WARNING, logger="rmq"):
        report, _ = await produce_and_consume(proxy.url, namespace + "b", "latency 50-200 ms")
    report.extra["baseline_send_per_second"] = baseline.extra["send_per_second"]
    report.extra["baseline_consume_per_second"] = baseline.extra["consume_per_second"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    report.extra["warnings"] = len(warnings)
    report.write(tmp_path)
    assert report.acknowledged == MESSAGES
    assert report.lost == 0 and report.duplicated == 0
    assert report.extra["reclaimed"] == 0 and report.extra["failed"] == 0
    assert warnings == [], warnings[:5]  # no timeout, no reconnection: nothing went wrong
