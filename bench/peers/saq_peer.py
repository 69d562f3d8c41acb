"""SAQ: lists + Lua; `saq saq_peer.settings` worker."""

from __future__ import annotations

import os
from typing import Any

from common import RECORD, redis_url
from saq import Queue

NAME = "saq"
PACKAGES = ("saq",)
NOTES = "`saq` worker (1 process), concurrency 10 (default); `await queue.enqueue('noop', p=p)`"
SYNC = False

queue = Queue.from_url(redis_url(), name="bench")


async def noop(ctx: Any, *, p: dict[str, Any]) -> None:
    RECORD(p)


settings = {"queue": queue, "functions": [noop]}


def worker_command(python: str, processes: int) -> list[str]:
    return [os.path.join(os.path.dirname(python), "saq"), "saq_peer.settings"]


class Client:
    async def send(self, p: dict[str, Any]) -> None:
        await queue.enqueue("noop", p=p)

    async def close(self) -> None:
        await queue.disconnect()


async def connect() -> Client:
    await queue.connect()
    return Client()
