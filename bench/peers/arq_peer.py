"""arq (run from bench/.venv-arq: arq pins redis-py < 6): a zset queue polled by the worker."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from arq.connections import ArqRedis, RedisSettings, create_pool
from common import RECORD, redis_url

NAME = "arq"
PACKAGES = ("arq", "redis")
NOTES = (
    "`arq` worker (1 process), max_jobs 10, poll_delay 0.5 s (defaults: at most about "
    "queue_read_limit / poll_delay jobs/s); `await redis.enqueue_job('noop', p)`"
)
SYNC = False
VENV = "arq"


async def noop(ctx: dict[str, Any], p: dict[str, Any]) -> None:
    RECORD(p)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = RedisSettings.from_dsn(redis_url())


def worker_command(python: str, processes: int) -> list[str]:
    return [os.path.join(os.path.dirname(python), "arq"), "arq_peer.WorkerSettings"]


class Client:
    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    async def send(self, p: dict[str, Any]) -> None:
        await self.pool.enqueue_job("noop", p)

    async def close(self) -> None:
        await self.pool.aclose()


async def connect() -> Client:
    return Client(await create_pool(WorkerSettings.redis_settings))
