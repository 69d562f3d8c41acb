"""FastStream's Redis broker: a stream subscriber in a consumer group, one XACK per message."""

from __future__ import annotations

import os
from typing import Any

from common import RECORD, redis_url
from faststream import FastStream
from faststream.redis import RedisBroker, StreamSub

NAME = "faststream[redis]"
PACKAGES = ("faststream",)
NOTES = (
    "`faststream run` (1 process), one subscriber, sequential handler (default); "
    "`await broker.publish(p, stream=...)`; last_id='0' so the group starts at the backlog"
)
SYNC = False

broker = RedisBroker(redis_url())
app = FastStream(broker)


@broker.subscriber(stream=StreamSub("bench", group="bench", consumer="w1", last_id="0"))
async def noop(p: dict[str, Any]) -> None:
    RECORD(p)


def worker_command(python: str, processes: int) -> list[str]:
    return [os.path.join(os.path.dirname(python), "faststream"), "run", "faststream_peer:app"]


class Client:
    async def send(self, p: dict[str, Any]) -> None:
        await broker.publish(p, stream="bench")

    async def close(self) -> None:
        await broker.stop()


async def connect() -> Client:
    await broker.connect()
    return Client()
