"""Steady traffic for the compose stack: orders at `TRAFFIC_RATE` per second until stopped.

Each order carries the key `order-<n>` (so `rmq message query orders --key order-42` finds it) and
is billed by `workers.orders`. `TRAFFIC_LIMIT` stops after that many orders (0: never). With
`RMQ_METRICS_PORT` set it serves its publish metrics on that port (`App.serve_metrics`, on
`RMQ_BIND`), which the compose Prometheus scrapes as the `rmq-producers` job.

    python -m workers.traffic
"""

from __future__ import annotations

import os
import signal

import anyio

import rmq
from rmq import metrics
from workers.demo import order

RATE = float(os.environ.get("TRAFFIC_RATE", "50"))
LIMIT = int(os.environ.get("TRAFFIC_LIMIT", "0"))
METRICS_PORT = os.environ.get("RMQ_METRICS_PORT")


async def produce(app: rmq.App, rate: float, limit: int = 0) -> int:
    """Send orders at `rate` per second, up to `limit` (0: no limit); return how many were sent."""
    sent = 0
    interval = 1.0 / rate
    next_at = anyio.current_time()
    while not limit or sent < limit:
        await app.send("orders", order(sent), tag="new", keys=[f"order-{sent}"])
        sent += 1
        next_at += interval
        await anyio.sleep(max(0.0, next_at - anyio.current_time()))
    return sent


async def main() -> None:
    app = rmq.App()
    if METRICS_PORT:
        metrics.register_topic("orders")  # the publish series exist (at 0) before the first send
        app.serve_metrics(int(METRICS_PORT), os.environ.get("RMQ_BIND", "127.0.0.1"))
    async with app, anyio.create_task_group() as tg:

        async def run() -> None:
            await produce(app, RATE, LIMIT)
            tg.cancel_scope.cancel()

        tg.start_soon(run)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
