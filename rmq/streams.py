"""Typed wrappers for the stream commands rmq sends directly (redis-py's own are untyped).

Replies use RESP2 shapes: an entry is `(id: bytes, fields: dict[bytes, bytes] | None)`, where
None or `{}` means the entry's payload is gone (trimmed or deleted while still pending).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from redis.asyncio import Redis

__all__ = ["Entry", "PendingRow", "call", "xautoclaim", "xpending_rows", "xreadgroup"]

Entry = tuple[bytes, dict[bytes, bytes] | None]


class PendingRow(NamedTuple):
    """One row of `XPENDING key group start end count [consumer]`."""

    entry_id: bytes
    consumer: bytes
    idle_ms: int
    deliveries: int


async def call(client: Redis, *args: Any, **options: Any) -> Any:
    """`execute_command` with an Any result (redis-py applies its response parser by name)."""
    return await client.execute_command(*args, **options)  # type: ignore[no-untyped-call]


async def xreadgroup(
    client: Redis,
    group: str,
    consumer: str,
    streams: Mapping[str, str],
    count: int,
    block_ms: int | None = None,
) -> list[tuple[str, list[Entry]]]:
    """XREADGROUP (always with COUNT); returns [(stream, entries)], empty on a BLOCK timeout."""
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    if block_ms is not None:
        args += ["BLOCK", block_ms]
    args.append("STREAMS")
    args.extend(streams.keys())
    args.extend(streams.values())
    reply = await call(client, *args)
    if not reply:
        return []
    return [(name.decode(), entries) for name, entries in reply]


async def xautoclaim(
    client: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, start: str, count: int
) -> tuple[str, list[Entry], list[bytes]]:
    """XAUTOCLAIM: (next cursor, claimed entries, ids of deleted entries purged from the PEL)."""
    reply = await call(
        client, "XAUTOCLAIM", stream, group, consumer, min_idle_ms, start, "COUNT", count
    )
    cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    deleted = list(reply[2]) if len(reply) > 2 else []
    return cursor, list(reply[1]), deleted


async def xpending_rows(
    client: Redis,
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
