"""Startup and shutdown hooks, and `app.state` (run: python lifecycle.py)."""

import anyio

import rmq
from rmq.testing import run_until_idle


class Pool:  # stands in for a database pool (asyncpg, SQLAlchemy, an HTTP client...)
    def __init__(self) -> None:
        self.rows: list[int] = []
        self.closed = False


app = rmq.App()


# --8<-- [start:hooks]
@app.on_startup
async def open_pool() -> None:  # once per worker process, before consuming (or a plain def)
    app.state.pool = Pool()


@app.on_shutdown
async def close_pool() -> None:  # once per worker process, after the drain
    app.state.pool.closed = True


@app.consumer("orders", group="billing", start="first")
async def bill(msg: rmq.Message) -> None:
    app.state.pool.rows.append(msg.body["id"])  # what the startup hooks opened


# --8<-- [end:hooks]


async def main() -> None:
    async with app:
        for n in range(3):
            await app.send("orders", {"id": n})
    await run_until_idle(app)  # runs the hooks as `rmq worker run` does


anyio.run(main)
assert sorted(app.state.pool.rows) == [0, 1, 2] and app.state.pool.closed
print("billed", sorted(app.state.pool.rows), "and closed the pool")
