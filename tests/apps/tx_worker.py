"""A worker app for the transaction chaos tests, run as a subprocess:

    python -m rmq worker run tests.apps.tx_worker:app     (cwd = the repository root)

Settings come from the `RMQ_*` environment variables. The "database" of the order service is the
Redis set `<namespace>:txdb:orders` (order ids whose local transaction committed), written by
`tests.apps.tx_producer`.

- The consumer (group `payments`, topic `TX_TOPIC`, default `txchaos`) appends
  `done <msg_id>` for each message it handles.
- The checker of producer group `TX_GROUP` (default `order-service`) appends
  `check <msg_id> <answer>` and answers COMMIT when the message's order (its first key) is in the
  database, else ROLLBACK: it decides exactly as the local transaction did.

Lines go to `RECORDER_OUT` with one `os.write` on an `O_APPEND` descriptor (see
`tests.apps.recorder`).
"""

from __future__ import annotations

import os

import redis.asyncio as redis

import rmq

TOPIC = os.environ.get("TX_TOPIC", "txchaos")
GROUP = os.environ.get("TX_GROUP", "order-service")
OUT = os.environ.get("RECORDER_OUT", "")

app = rmq.App()
_fd: int | None = None
_db: redis.Redis | None = None


def db_key(namespace: str) -> str:
    return f"{namespace}:txdb:orders"


def _record(line: str) -> None:
    global _fd
    if not OUT:
        return
    if _fd is None:
        _fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{line}\n".encode())


@app.consumer(TOPIC, group="payments", start="first")
async def pay(msg: rmq.Message) -> None:
    _record(f"done {msg.msg_id}")


@app.transaction_checker(group=GROUP)
async def check(msg: rmq.Message) -> rmq.TransactionState:
    global _db
    if _db is None:
        _db = redis.Redis.from_url(app.settings.redis_url)
    committed = await _db.sismember(db_key(app.settings.namespace), msg.keys[0])
    answer = rmq.TransactionState.COMMIT if committed else rmq.TransactionState.ROLLBACK
    _record(f"check {msg.msg_id} {answer}")
    return answer
