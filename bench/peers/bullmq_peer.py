"""BullMQ (Python): lists, zsets and Lua; the worker is a Worker object (bullmq has no CLI)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from bullmq import Queue, Worker
from common import RECORD, redis_url

NAME = "bullmq"
PACKAGES = ("bullmq",)
NOTES = (
    "Worker(concurrency=1, the default) in `python bullmq_peer.py`; `await queue.add(name, p)`;"
    " bulk = queue.addBulk; completed jobs kept (default)"
)
SYNC = False
QUEUE = "bench"


def worker_command(python: str, processes: int) -> list[str]:
    return [python, "bullmq_peer.py"]


class Client:
    def __init__(self) -> None:
        self.queue = Queue(QUEUE, {"connection": redis_url()})

    async def send(self, p: dict[str, Any]) -> None:
        await self.queue.add("noop", p)

    async def send_bulk(self, ps: list[dict[str, Any]]) -> None:
        await self.queue.addBulk([{"name": "noop", "data": p} for p in ps])

    async def close(self) -> None:
        await self.queue.close()


async def connect() -> Client:
    return Client()


async def process(job: Any, token: str) -> None:
    RECORD(job.data)


async def work() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(QUEUE, process, {"connection": redis_url()})
    await stop.wait()
    await worker.close()


if __name__ == "__main__":
    asyncio.run(work())
