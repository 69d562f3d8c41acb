"""The raw limit in the peer harness: redis-py asyncio + hiredis + uvloop, no framework.

Sender: one awaited `XADD raw * d <json>` per message (bulk: pipelines of 100). Worker (run as
`python raw_peer.py`): `XREADGROUP COUNT 100 BLOCK 1000`, orjson per body, one multi-id XACK per
batch, the best a Python consumer can do per process.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from common import RECORD, redis_url
from redis.asyncio import Redis
from redis.exceptions import ResponseError

NAME = "raw redis-py"
PACKAGES = ("redis", "hiredis")
NOTES = "XADD; worker: XREADGROUP COUNT 100 BLOCK + one XACK per batch, orjson per body"
SYNC = False
STREAM, GROUP = "raw", "g"


def worker_command(python: str, processes: int) -> list[str]:
    return [python, "raw_peer.py"]


async def create_group(r: Redis) -> None:
    try:
        await r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Client:
    def __init__(self) -> None:
        self.r = Redis.from_url(redis_url(), protocol=2)

    async def send(self, p: dict[str, Any]) -> None:
        await self.r.xadd(STREAM, {"d": orjson.dumps(p)})

    async def send_bulk(self, ps: list[dict[str, Any]]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for p in ps:
            pipe.xadd(STREAM, {"d": orjson.dumps(p)})
        await pipe.execute()

    async def close(self) -> None:
        await self.r.aclose()


async def connect() -> Client:
    client = Client()
    await create_group(client.r)
    return client


async def work() -> None:
    r = Redis.from_url(redis_url(), protocol=2)
    await create_group(r)
    while True:
        reply: Any = await r.xreadgroup(GROUP, "c", {STREAM: ">"}, count=100, block=1000)
        if not reply:
            continue
        ids = []
        for entry_id, fields in reply[0][1]:
            RECORD(orjson.loads(fields[b"d"]))
            ids.append(entry_id)
        await r.xack(STREAM, GROUP, *ids)


if __name__ == "__main__":
    import uvloop

    try:
        uvloop.run(work())
    except KeyboardInterrupt:
        sys.exit(0)
