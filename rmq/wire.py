"""A dedicated Redis connection for one hot loop: the producer's flusher, a fetcher, an acker.

Each round trip packs every command with hiredis into one write and reads the replies raw
(RESP2, no response callbacks), under one deadline. Compared with a pooled client call this saves
a pool checkout, per-argument encoding and two timeout contexts per command, which is most of
the Python cost of a small command. Error replies come back as `ResponseError` objects in the
result list; commands that failed with NOSCRIPT are re-run once after the scripts are loaded.
Any connection-level failure (or cancellation) drops the connection; the next call opens a new one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ResponseError

from .scripts import Scripts

__all__ = ["Wire"]

_pack = hiredis.pack_command


class Wire:
    """One connection taken from `pool` and kept for this wire's lifetime."""

    __slots__ = ("_conn", "_pool", "_scripts")

    def __init__(self, pool: ConnectionPool, scripts: Scripts) -> None:
        self._pool = pool
        self._scripts = scripts
        self._conn: AbstractConnection | None = None

    async def execute(
        self, commands: Sequence[tuple[Any, ...]], seconds: float | None = None
    ) -> list[Any]:
        """Send `commands` in one write, return one reply (or ResponseError) per command."""
        replies = await self._round_trip(commands, seconds)
        return await self._scripts.recover(
            commands, replies, partial(self._round_trip, seconds=seconds),
            partial(self._load_scripts, seconds),
        )  # fmt: skip

    async def call(self, *command: Any, seconds: float | None = None) -> Any:
        """One command; raises its error reply."""
        (reply,) = await self.execute([command], seconds)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def close(self) -> None:
        """Give the connection back to the pool."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)

    async def _load_scripts(self, seconds: float | None) -> None:
        commands = [("SCRIPT", "LOAD", script.source) for script in self._scripts]
        for reply in await self._round_trip(commands, seconds):
            if isinstance(reply, ResponseError):
                raise reply

    async def _round_trip(
        self, commands: Sequence[tuple[Any, ...]], seconds: float | None
    ) -> list[Any]:
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        packed = [_pack(command) for command in commands]
        try:
            async with asyncio.timeout(seconds):
                await conn.send_packed_command(packed, check_health=False)
                replies: list[Any] = []
                for _ in packed:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as error:
                        replies.append(error)
                return replies
        except BaseException:
            self._conn = None
            await asyncio.shield(_drop(self._pool, conn))
            raise


async def _drop(pool: ConnectionPool, conn: AbstractConnection) -> None:
    await conn.disconnect(nowait=True)
    await pool.release(conn)
