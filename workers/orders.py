"""Order billing: the `billing` group turns `orders` messages into invoices.

Each invoice is written to the hash `<namespace>:demo:invoices` (order id -> amount in cents), so
a redelivered order overwrites its own invoice instead of billing twice: handlers must be
idempotent under at-least-once delivery.

The database client (here a Redis client standing in for one) is opened once per worker process
by a startup hook, kept in `app.state`, and closed by a shutdown hook after the drain.

    rmq worker run workers.orders:app
"""

from __future__ import annotations

import redis.asyncio as redis

import rmq

app = rmq.App()


def invoices_key(namespace: str) -> str:
    return f"{namespace}:demo:invoices"


@app.on_startup
async def open_database() -> None:
    db = redis.Redis.from_url(app.settings.redis_url)
    await db.ping()  # fail at start (exit 4, the reason on stderr), not on the first order
    app.state.db = db


@app.on_shutdown
async def close_database() -> None:
    await app.state.db.aclose()


@app.consumer("orders", group="billing", concurrency=20)
async def bill(msg: rmq.Message) -> None:
    """Price the order and store its invoice (idempotent: keyed by order id)."""
    order = msg.body
    amount = sum(item["qty"] * item["price_cents"] for item in order["items"])
    if order.get("coupon") == "HALF":
        amount //= 2
    db: redis.Redis = app.state.db
    await db.hset(invoices_key(app.settings.namespace), str(order["id"]), amount)
