"""streaQ: streams + a Redis Function library; `streaq run` worker."""

from __future__ import annotations

import os
from typing import Any

from common import RECORD, redis_url
from streaq import Worker

NAME = "streaq"
PACKAGES = ("streaq",)
NOTES = "`streaq run` (1 process), concurrency 16 (default); `await task.enqueue(p)`"
SYNC = False

worker = Worker(redis_url=redis_url(), queue_name="bench")


@worker.task()
async def noop(p: dict[str, Any]) -> None:
    RECORD(p)


def worker_command(python: str, processes: int) -> list[str]:
    return [os.path.join(os.path.dirname(python), "streaq"), "run", "streaq_peer:worker"]


class Client:
    async def send(self, p: dict[str, Any]) -> None:
        await noop.enqueue(p)

    async def send_bulk(self, ps: list[dict[str, Any]]) -> None:
        await worker.enqueue_many([noop.enqueue(p) for p in ps])

    async def close(self) -> None:
        await worker.__aexit__(None, None, None)


async def connect() -> Client:
    await worker.__aenter__()
    return Client()
