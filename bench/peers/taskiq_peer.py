"""taskiq-redis: RedisStreamBroker (a stream and a consumer group, one XACK per message)."""

from __future__ import annotations

import os
from typing import Any

from common import RECORD, redis_url
from taskiq_redis import RedisStreamBroker

NAME = "taskiq-redis"
PACKAGES = ("taskiq", "taskiq-redis")
NOTES = (
    "`taskiq worker --workers 1` (default 2), max_async_tasks 100 (default); `await task.kiq(p)`;"
    " no result backend; consumer_id='0' so the group starts at the prefilled backlog"
)
SYNC = False

broker = RedisStreamBroker(redis_url(), queue_name="bench", consumer_id="0")


@broker.task(task_name="noop")
async def noop(p: dict[str, Any]) -> None:
    RECORD(p)


def worker_command(python: str, processes: int) -> list[str]:
    taskiq = os.path.join(os.path.dirname(python), "taskiq")
    return [taskiq, "worker", "taskiq_peer:broker", "--workers", str(processes)]


class Client:
    async def send(self, p: dict[str, Any]) -> None:
        await noop.kiq(p)

    async def close(self) -> None:
        await broker.shutdown()


async def connect() -> Client:
    await broker.startup()
    return Client()
