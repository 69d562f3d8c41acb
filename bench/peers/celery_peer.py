"""Celery with the kombu Redis transport (lists); sync producer, `celery worker --pool threads`."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from common import RECORD, redis_url

NAME = "celery[redis]"
PACKAGES = ("celery", "kombu")
NOTES = (
    "`celery worker --pool threads` (1 process, -c = cores, the default), no result backend, "
    "default prefetch multiplier 4; sync `task.delay(p)`"
)
SYNC = True

app = Celery("bench", broker=redis_url())


@app.task(name="noop")
def noop(p: dict[str, Any]) -> None:
    RECORD(p)


def worker_command(python: str, processes: int) -> list[str]:
    celery = os.path.join(os.path.dirname(python), "celery")
    return [celery, "-A", "celery_peer", "worker", "--pool", "threads"]


class Client:
    def send(self, p: dict[str, Any]) -> None:
        noop.delay(p)

    def close(self) -> None:
        app.close()


def connect() -> Client:
    return Client()
