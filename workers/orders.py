"""Order billing: the `billing` group turns `orders` messages into invoices.

Each invoice is written to the hash `<namespace>:demo:invoices` (order id -> amount in cents), so
a redelivered order overwrites its own invoice instead of billing twice: handlers must be
idempotent under at-least-once delivery.

    rmq worker run workers.orders:app
"""

from __future__ import annotations

import redis.asyncio as redis

import rmq

app = rmq.App()
_db: redis.Redis | None = None


def invoices_key(namespace: str) -> str:
    return f"{namespace}:demo:invoices"


async def _database() -> redis.Redis:
    global _db
    if _db is None:
        _db = redis.Redis.from_url(app.settings.redis_url)
    return _db


@app.consumer("orders", group="billing", concurrency=20)
async def bill(msg: rmq.Message) -> None:
    """Price the order and store its invoice (idempotent: keyed by order id)."""
    order = msg.body
    amount = sum(item["qty"] * item["price_cents"] for item in order["items"])
    if order.get("coupon") == "HALF":
        amount //= 2
    db = await _database()
    await db.hset(invoices_key(app.settings.namespace), str(order["id"]), amount)
