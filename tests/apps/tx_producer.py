"""An order service for the transaction chaos tests, run as a subprocess:

    python -m tests.apps.tx_producer     (cwd = the repository root)

Settings come from the `RMQ_*` environment variables. Each order is one transaction of
`TX_MESSAGES` messages (default 1) on topic `TX_TOPIC` (default `txchaos`), message i on queue i,
all keyed by the order id, sent by producer group `TX_GROUP` (default `order-service`, no checker
here: a worker answers the check-backs). The local transaction adds the order id to the
"database", the Redis set `<namespace>:txdb:orders`; orders whose id is a multiple of 5 fail
their local transaction instead (rolled back). `TX_ORDERS` orders are sent one after the other
(default 1), then the process exits 0, unless `TX_DIE` makes it SIGKILL itself in the last order:

- `before_db`: in the local transaction, before the database write;
- `after_db`: in the local transaction, right after the database write (before any commit);
- `after_commit`: right after the first queue's commit returned;
- `mid_rollback`: the last order fails (no database write); dies right after the first queue's
  rollback returned.

It appends `half <order> <msg_id>` once a message is prepared and `end <order> <outcome>` when
an order is settled, to `RECORDER_OUT` (one `os.write` per line: they survive the SIGKILL).
"""

from __future__ import annotations

import os
import signal
from functools import partial
from typing import Any

import anyio
import redis.asyncio as redis

import rmq
from rmq.transaction.store import HalfStore
from tests.apps.tx_worker import db_key

TOPIC = os.environ.get("TX_TOPIC", "txchaos")
GROUP = os.environ.get("TX_GROUP", "order-service")
MESSAGES = int(os.environ.get("TX_MESSAGES", "1"))
ORDERS = int(os.environ.get("TX_ORDERS", "1"))
DIE = os.environ.get("TX_DIE", "")
OUT = os.environ.get("RECORDER_OUT", "")

_fd = os.open(OUT or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def record(line: str) -> None:
    os.write(_fd, f"{line}\n".encode())


def on_queue(i: int, queues: int, msg: rmq.Message) -> int:
    return i % queues


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class OutOfStock(Exception):
    pass


def die_after_first(name: str) -> None:
    """SIGKILL this process right after the first `HalfStore.<name>` call returns."""
    original = getattr(HalfStore, name)

    async def patched(self: HalfStore, *args: Any) -> Any:
        result = await original(self, *args)
        die()
        return result

    setattr(HalfStore, name, patched)


async def place(producer: rmq.Producer, db: redis.Redis, order: int, last: bool) -> None:
    fails = order % 5 == 0 or (last and DIE == "mid_rollback")
    if last and DIE == "after_commit":
        die_after_first("commit")
    if last and DIE == "mid_rollback":
        die_after_first("rollback")
    try:
        async with producer.transaction() as tx:
            for i in range(MESSAGES):
                sent = await tx.send(
                    TOPIC, {"order": order, "part": i}, keys=[f"order-{order}"],
                    selector=partial(on_queue, i),
                )  # fmt: skip
                record(f"half {order} {sent.msg_id}")
            if last and DIE == "before_db":
                die()
            if fails:
                raise OutOfStock(order)
            await db.sadd(db_key(producer_namespace()), f"order-{order}")
            if last and DIE == "after_db":
                die()
    except OutOfStock:
        record(f"end {order} rollback")
        return
    record(f"end {order} commit")


def producer_namespace() -> str:
    return app.settings.namespace


app = rmq.App()


async def main() -> None:
    producer = app.producer(group=GROUP)
    db = redis.Redis.from_url(app.settings.redis_url)
    async with app:
        for order in range(1, ORDERS + 1):
            await place(producer, db, order, order == ORDERS)
    await db.aclose()


if __name__ == "__main__":
    anyio.run(main)
