"""Distributed transaction: an order service and a payment service that never disagree.

- The **order service** writes each order into its database and sends a payment message, in one
  transaction: `producer.send_in_transaction("payments", order, execute=write_order, arg=order)`.
  The message is stored as a half message first; it becomes visible only if `write_order`
  committed the order row (COMMIT), and is discarded if it did not (ROLLBACK).
- The **payment service** (`@app.consumer("payments", group="payment-service")`) charges each
  paid order once (idempotently: a redelivery finds the payment already there).
- The **checker** of the `order-service` producer group looks the order up: when the order
  service dies, or cannot tell, between its database commit and the message's commit, the
  check-back asks `check_order`, which answers COMMIT if the order row exists, else ROLLBACK.
  (A local transaction that does not finish within `execute_timeout`, half the check immunity
  by default, is left to the check-back, so by the time the checker asks, a missing row means
  the order was not placed.)

The "database" is one SQLite file (`PAYMENTS_DB`) with an `orders` table (the order service's)
and a `payments` table (the payment service's). Run the whole scenario:

    python -m workers.payments        # PAYMENTS_ORDERS (default 200) orders, then a summary

It uses the Redis at RMQ_REDIS_URL if one answers there (else a private server, as `make demo`),
its own namespace and a temporary database, starts `rmq worker run workers.payments:app` (the
payment service and the checker) and sends the orders. Some orders are out of stock (rolled
back), some local transactions cannot confirm their outcome (they return UNKNOWN, with or
without having written the order): the check-back settles those. It exits 0 when every order
that exists was charged exactly once and no payment lacks its order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as redis

import rmq
from rmq.embedded import EmbeddedServer
from rmq.settings import redact_url
from workers.demo import reachable

TOPIC = "payments"
GROUP = "order-service"
ROOT = Path(__file__).resolve().parent.parent
COMMIT, ROLLBACK, UNKNOWN = (
    rmq.TransactionState.COMMIT,
    rmq.TransactionState.ROLLBACK,
    rmq.TransactionState.UNKNOWN,
)

app = rmq.App()  # the payment service (and the order service's checker): rmq worker run ...


# ---------------------------------------------------------------------- the database


@contextlib.contextmanager
def database() -> Iterator[sqlite3.Connection]:
    """A connection to the shared SQLite file; commits on success, rolls back on error."""
    db = sqlite3.connect(os.environ.get("PAYMENTS_DB", "payments.sqlite3"), timeout=30)
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        with db:
            yield db
    finally:
        db.close()


def create_tables() -> None:
    with database() as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, cents INTEGER)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS payments "
            "(order_id INTEGER PRIMARY KEY, msg_id TEXT, deliveries INTEGER)"
        )


# ---------------------------------------------------------------------- the order service


def write_order(msg: rmq.Message, order: dict[str, Any]) -> rmq.TransactionState:
    """The local transaction: insert the order row, unless the item is out of stock."""
    if order["out_of_stock"]:
        return ROLLBACK
    if order["lost_before_commit"]:  # the database transaction never committed, and we
        return UNKNOWN  # cannot tell: the check-back will find no order
    with database() as db:
        db.execute("INSERT INTO orders (id, cents) VALUES (?, ?)", (order["id"], order["cents"]))
    if order["lost_after_commit"]:  # committed, but the confirmation was lost
        return UNKNOWN
    return COMMIT


def check_order(msg: rmq.Message) -> rmq.TransactionState:
    """The check-back: the payment is due exactly when the order exists."""
    with database() as db:
        row = db.execute("SELECT 1 FROM orders WHERE id = ?", (msg.body["id"],)).fetchone()
    return COMMIT if row else ROLLBACK


def make_order(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "cents": 500 + 25 * (n % 40),
        "out_of_stock": n % 10 == 0,
        "lost_before_commit": n % 13 == 0,
        "lost_after_commit": n % 7 == 0,
    }


# ---------------------------------------------------------------------- the payment service

app.transaction_checker(group=GROUP)(check_order)


@app.consumer(TOPIC, group="payment-service", concurrency=8)
def charge(msg: rmq.Message) -> None:
    """Charge the order once: a redelivered message finds its payment (and only counts)."""
    with database() as db:
        db.execute(
            "INSERT INTO payments (order_id, msg_id, deliveries) VALUES (?, ?, 1) "
            "ON CONFLICT (order_id) DO UPDATE SET deliveries = deliveries + 1",
            (msg.body["id"], msg.msg_id),
        )


# ---------------------------------------------------------------------- the scenario


async def place_orders(orders: list[dict[str, Any]], settings: rmq.Settings) -> Counter[str]:
    """The order service: one transaction per order, 8 at a time; counts local outcomes."""
    service = rmq.App(settings)
    producer = service.producer(group=GROUP, checker=check_order)
    outcomes: Counter[str] = Counter()
    limiter = anyio.CapacityLimiter(8)

    async def place(order: dict[str, Any]) -> None:
        async with limiter:
            result = await producer.send_in_transaction(
                TOPIC, {"id": order["id"], "cents": order["cents"]}, execute=write_order,
                arg=order, keys=[f"order-{order['id']}"],
            )  # fmt: skip
            outcomes[result.local_state.value] += 1

    async with service, anyio.create_task_group() as tg:
        for order in orders:
            tg.start_soon(place, order)
    return outcomes


def ledger() -> tuple[set[int], dict[int, int]]:
    """(order ids, deliveries of the payment message per paid order id) in the database."""
    with database() as db:
        orders = {row[0] for row in db.execute("SELECT id FROM orders")}
        paid = dict(db.execute("SELECT order_id, deliveries FROM payments").fetchall())
    return orders, paid


async def run(url: str, namespace: str, count: int) -> int:
    immunity = os.environ.get("RMQ_TRANSACTION_CHECK_IMMUNITY", "2")
    env = {
        **os.environ, "RMQ_REDIS_URL": url, "RMQ_NAMESPACE": namespace,
        "RMQ_TRANSACTION_CHECK_IMMUNITY": immunity, "RMQ_TRANSACTION_CHECK_INTERVAL": "1",
        "RMQ_LOG_LEVEL": os.environ.get("RMQ_LOG_LEVEL", "WARNING"),
    }  # fmt: skip
    settings = rmq.Settings.from_env(env)
    create_tables()
    orders = [make_order(n) for n in range(1, count + 1)]
    expected = {o["id"] for o in orders if not (o["out_of_stock"] or o["lost_before_commit"])}
    app.settings = settings
    async with app:  # declares the payment-service group: nothing sent from now on is missed
        pass
    started = time.monotonic()
    worker = await anyio.open_process(
        [sys.executable, "-m", "rmq", "worker", "run", "workers.payments:app"],
        cwd=ROOT, env=env, stdout=None, stderr=None,
    )  # fmt: skip
    print(f"started the payment worker (pid {worker.pid}): rmq worker run workers.payments:app")
    try:
        outcomes = await place_orders(orders, settings)
        print(
            f"order service: {count} orders in {time.monotonic() - started:.2f}s; local "
            f"transactions: {outcomes['COMMIT']} COMMIT, {outcomes['ROLLBACK']} ROLLBACK "
            f"(out of stock), {outcomes['UNKNOWN']} UNKNOWN (left to the check-back)"
        )
        while True:
            in_db, paid = ledger()
            if in_db == expected and set(paid) == expected:
                break
            if worker.returncode is not None or time.monotonic() - started > 120:
                print(f"not settled: {len(in_db)} orders, {len(paid)} payments")
                return 1
            await anyio.sleep(0.1)
        took = time.monotonic() - started
        redelivered = sum(n - 1 for n in paid.values())
        print(
            f"payment service: {len(paid)} orders charged, no payment without an order, "
            f"{count - len(in_db)} orders never placed and never charged; payment messages "
            f"delivered {len(paid) + redelivered} times ({redelivered} redeliveries) "
            f"in {took:.2f}s"
        )
        worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            code = await worker.wait()
        print(f"worker drained and exited with code {code}")
        return 1 if code else 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


async def main() -> int:
    url = os.environ.get("RMQ_REDIS_URL", "redis://localhost:6379/0")
    namespace = f"payments-{uuid.uuid4().hex[:8]}"
    count = int(os.environ.get("PAYMENTS_ORDERS", "200"))
    server: EmbeddedServer | None = None
    if await reachable(url):
        where = f"the Redis at {redact_url(url)}"
    else:
        server = EmbeddedServer().start()
        url = server.url
        where = f"a private {server.name} ({server.binary}) on {url}"
    print(f"payments demo: using {where}, namespace {namespace!r}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PAYMENTS_DB"] = str(Path(tmp) / "shop.sqlite3")
        db = redis.Redis.from_url(url)
        try:
            return await run(url, namespace, count)
        finally:
            async for key in db.scan_iter(match=f"{namespace}:*", count=1000):
                await db.delete(key)
            await db.aclose()
            if server is not None:
                server.cleanup()
                print("stopped the private server")


if __name__ == "__main__":
    sys.exit(anyio.run(main))
