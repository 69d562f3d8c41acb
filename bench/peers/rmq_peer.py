"""rmq in the peer harness: `await app.send()` per message, `rmq worker run rmq_peer:app`.

The worker is a real separate process started by rmq's own CLI (`--processes N` for several),
with library defaults (concurrency 20, prefetch 1000, fetch_batch 32, 4 queues per topic); the
runner sets RMQ_REDIS_URL and RMQ_NAMESPACE.
"""

from __future__ import annotations

from typing import Any

from common import RECORD, redis_url

import rmq

NAME = "rmq"
PACKAGES = ("rmq",)
NOTES = "rmq worker run (defaults: concurrency 20, prefetch 1000); async no-op handler"
SYNC = False
TOPIC, GROUP, NAMESPACE = "bench", "bench", "bench"

app = rmq.App()


@app.consumer(TOPIC, group=GROUP, start="first")
async def noop(msg: rmq.Message) -> None:
    RECORD(msg.body)


def worker_command(python: str, processes: int) -> list[str]:
    return [python, "-m", "rmq", "worker", "run", "rmq_peer:app", "--processes", str(processes)]


def worker_env() -> dict[str, str]:
    return {"RMQ_REDIS_URL": redis_url(), "RMQ_NAMESPACE": NAMESPACE}


class Client:
    def __init__(self) -> None:
        self.app = rmq.App(rmq.Settings(redis_url=redis_url(), namespace=NAMESPACE))

    async def send(self, p: dict[str, Any]) -> None:
        await self.app.send(TOPIC, p)

    async def send_delayed(self, p: dict[str, Any], delay: float) -> None:
        await self.app.send(TOPIC, p, delay=delay)

    async def send_bulk(self, ps: list[dict[str, Any]]) -> None:
        await self.app.send_batch(TOPIC, ps)

    async def close(self) -> None:
        await self.app.__aexit__(None, None, None)


async def connect() -> Client:
    client = Client()
    await client.app.__aenter__()
    return client
