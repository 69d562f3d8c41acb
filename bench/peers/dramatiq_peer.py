"""dramatiq's Redis broker (lists + Lua); sync producer, `dramatiq` worker."""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from common import RECORD, redis_url
from dramatiq.brokers.redis import RedisBroker

NAME = "dramatiq[redis]"
PACKAGES = ("dramatiq",)
NOTES = "`dramatiq --processes 1` x 8 threads (default); sync `actor.send(p)`; default middleware"
SYNC = True

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop(p: dict[str, Any]) -> None:
    RECORD(p)


def worker_command(python: str, processes: int) -> list[str]:
    dramatiq_bin = os.path.join(os.path.dirname(python), "dramatiq")
    return [dramatiq_bin, "dramatiq_peer", "--processes", str(processes)]


class Client:
    def send(self, p: dict[str, Any]) -> None:
        noop.send(p)

    def close(self) -> None:
        broker.close()


def connect() -> Client:
    return Client()
