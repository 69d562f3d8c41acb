"""Tests of each Lua script in rmq/lua/, called directly (through `rmq.scripts.Scripts`).

Shared helpers live here; conftest.py holds the `client` (every script loaded) and `q` fixtures.
Clients decode responses to str, except where a test needs the raw bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from rmq.keys import NamespaceKeys, QueueKeys
from rmq.scripts import Scripts

SCRIPTS = Scripts()


@asynccontextmanager
async def connect(redis_url: str, *, decode: bool = True) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=decode)
    try:
        yield client
    finally:
        await client.aclose()


def queue_keys(namespace: str, topic: str = "orders", queue_id: int = 0) -> QueueKeys:
    return NamespaceKeys(namespace).queue(topic, queue_id)


async def call(client: Redis, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    return await SCRIPTS.call(client, name, keys, args)


async def server_ms(client: Redis) -> int:
    """The server's clock in ms (the scripts take "now" from TIME)."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def pending(client: Redis, stream: str, group: str) -> dict[str, dict[str, Any]]:
    """XPENDING - + 1000 as {entry id: {consumer, idle, deliveries}}."""
    rows = await client.xpending_range(stream, group, "-", "+", 1000)
    return {
        _s(r["message_id"]): {
            "consumer": _s(r["consumer"]),
            "idle": int(r["time_since_delivered"]),
            "deliveries": int(r["times_delivered"]),
        }
        for r in rows
    }


async def group_info(client: Redis, stream: str, group: str) -> dict[str, Any]:
    """The XINFO GROUPS row of `group`, with str keys."""
    for row in await client.xinfo_groups(stream):
        row = {_s(k): v for k, v in row.items()}
        if _s(row["name"]) == group:
            return row
    raise AssertionError(f"no group {group!r} on {stream}")


async def consumers(client: Redis, stream: str, group: str) -> dict[str, dict[str, Any]]:
    """XINFO CONSUMERS as {name: row}."""
    rows = await client.xinfo_consumers(stream, group)
    return {_s(r["name"]): {_s(k): v for k, v in r.items()} for r in rows}


async def add_entries(client: Redis, stream: str, count: int, **fields: str) -> list[str]:
    """XADD `count` plain entries (as another client would), returning their ids."""
    ids = []
    for n in range(count):
        entry = {"n": str(n), **fields}
        ids.append(_s(await client.xadd(stream, entry)))  # type: ignore[arg-type]
    return ids


async def entries(client: Redis, key: str) -> list[tuple[Any, dict[Any, Any]]]:
    """XRANGE - + as [(entry id, fields in stored order)]."""
    reply: Any = await client.xrange(key)
    return list(reply)


async def read_ids(client: Redis, group: str, consumer: str, stream: str, count: int) -> list[Any]:
    """XREADGROUP ... > and return the delivered entry ids."""
    reply: Any = await client.xreadgroup(group, consumer, {stream: ">"}, count=count)
    return [entry_id for _, batch in reply for entry_id, _ in batch]


def _s(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


Received = tuple[str, dict[Any, Any], int]


async def pull_receive(
    client: Redis, q: QueueKeys, group: str, consumer: str, limit: int, invisible_ms: int
) -> tuple[int, str, list[Received]]:
    """Run pull_receive.lua; returns (lost, last stream id, [(entry id, fields, deliveries)])."""
    reply = await call(
        client,
        "pull_receive",
        [q.stream, q.invisible(group)],
        [group, consumer, limit, invisible_ms],
    )
    assert isinstance(reply, list)
    items: list[Received] = []
    for i in range(2, len(reply), 3):
        flat = reply[i + 1]
        assert len(flat) % 2 == 0
        items.append((reply[i], dict(zip(flat[::2], flat[1::2], strict=True)), int(reply[i + 2])))
    return int(reply[0]), reply[1], items


async def invisible(client: Redis, q: QueueKeys, group: str) -> dict[str, int]:
    """The invisible-until zset as {entry id: ms}."""
    rows: Any = await client.zrange(q.invisible(group), 0, -1, withscores=True)
    return {_s(m): int(s) for m, s in rows}


async def unpacked(client: Redis, payload: str, member: str) -> list[Any] | None:
    """The cmsgpack-packed value of `member` in the hash `payload`, unpacked by Redis itself."""
    reply = await client.eval(
        "local v = redis.call('HGET', KEYS[1], ARGV[1]) "
        "if not v then return false end return cmsgpack.unpack(v)",
        1,
        payload,
        member,
    )
    return list(reply) if reply is not None else None
