"""Typed wrappers for the stream commands rmq sends directly (redis-py's own are untyped).

Replies use RESP2 shapes. An entry's fields of None or `{}` mean its payload is gone (trimmed or
deleted while still pending).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

__all__ = ["Client", "Entry", "PendingRow", "call", "xautoclaim", "xpending_rows"]

Client = Redis | RedisCluster
"""A client for everyday commands: one server, or a cluster client that routes by key."""

Entry = Sequence[Any]
"""`(id, fields)`: fields as a dict (parsed replies) or a flat list (raw); None if trimmed."""


class PendingRow(NamedTuple):
    """One row of `XPENDING key group start end count [consumer]`."""

    entry_id: bytes
    consumer: bytes
    idle_ms: int
    deliveries: int


async def call(client: Client, *args: Any, **options: Any) -> Any:
    """`execute_command` with an Any result (redis-py applies its response parser by name)."""
    result: Any = await client.execute_command(*args, **options)
    return result


async def xautoclaim(
    client: Client, stream: str, group: str, consumer: str, min_idle_ms: int, start: str, count: int
) -> tuple[str, list[Entry], list[bytes]]:
    """XAUTOCLAIM: (next cursor, claimed entries, ids of deleted entries purged from the PEL)."""
    reply = await call(
        client, "XAUTOCLAIM", stream, group, consumer, min_idle_ms, start, "COUNT", count
    )
    cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    deleted = list(reply[2]) if len(reply) > 2 else []
    return cursor, list(reply[1]), deleted


async def xpending_rows(
    client: Client,
    stream: str,
    group: str,
    start: str | bytes,
    end: str | bytes,
    count: int,
    consumer: str | None = None,
) -> list[PendingRow]:
    """The extended form of XPENDING, one row per pending entry."""
    args: list[Any] = ["XPENDING", stream, group, start, end, count]
    if consumer is not None:
        args.append(consumer)
    rows = await call(client, *args, parse_detail=True)
    return [
        PendingRow(
            row["message_id"],
            row["consumer"],
            int(row["time_since_delivered"]),
            int(row["times_delivered"]),
        )
        for row in rows
    ]
