"""A dedicated Redis connection for one hot loop: the producer's flusher, a fetcher, an acker.

Each round trip packs every command with hiredis into one write and reads the replies raw
(RESP2, no response callbacks), under one deadline. Compared with a pooled client call this saves
a pool checkout, per-argument encoding and two timeout contexts per command, which is most of
the Python cost of a small command. Error replies come back as `ResponseError` objects in the
result list; commands that failed with NOSCRIPT are re-run once after the scripts are loaded.

Every round trip is bounded. Its deadline covers taking a connection from the pool, connecting,
the handshake (CLIENT SETNAME, AUTH), the write and every reply; without one from the caller it
is the wire's `timeout` (the `socket_timeout` setting), plus the BLOCK of a blocking read. That
deadline *is* the socket timeout of a wire's connections (their pool sets none: a per-write
socket timeout would cost a task per write on Python 3.11). Any connection-level failure, timeout
or cancellation drops the connection, so a connection that went silent is never used again; the
next round trip opens a new one.

`Progress` watches the wires of one server for readiness: a wire whose round trip runs past its
deadline, or whose round trips have kept failing for longer than a blocking read may take, is
stalled (see `Progress.stalled`). A wire that is closed while failing hands its failure on to the
next wire opened under the same name (a loop that reconnects keeps its history).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Sequence
from functools import partial
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import NoScriptError, ResponseError

from .scripts import Scripts

__all__ = [
    "DEFAULT_TIMEOUT", "LARGE_ARGUMENT", "Large", "Multi", "Progress", "Wire", "block_seconds",
]  # fmt: skip

_pack = hiredis.pack_command
DEFAULT_TIMEOUT = 10.0
"""A wire's default deadline, in seconds, when none is given (the `socket_timeout` default)."""
_OVERDUE_MARGIN = 1.0
"""Seconds past its deadline a round trip may run (a busy event loop) before it counts as stuck."""
_BLOCKING_READS = frozenset({"XREAD", "XREADGROUP", b"XREAD", b"XREADGROUP"})


def block_seconds(commands: Sequence[tuple[Any, ...]]) -> float:
    """The longest BLOCK (in seconds) of the blocking reads among `commands` (0 when none)."""
    longest = 0
    for command in commands:
        if command and command[0] in _BLOCKING_READS:
            for i in range(1, len(command) - 1):
                arg = command[i]
                if isinstance(arg, str | bytes) and arg in ("BLOCK", b"BLOCK"):
                    longest = max(longest, int(command[i + 1]))
                    break
    return longest / 1000


class Progress:
    """The round trips of every live wire to one server, for readiness."""

    __slots__ = ("_carried", "_wires")

    def __init__(self) -> None:
        self._wires: weakref.WeakSet[Wire] = weakref.WeakSet()
        self._carried: dict[str, tuple[float, float]] = {}  # name -> (failing since, closed at)

    def add(self, wire: Wire, name: str | None) -> float | None:
        """Watch `wire`; returns the failure it inherits from a wire of the same name closed
        recently while failing (its start, monotonic), or None."""
        self._wires.add(wire)
        if name is None:
            return None
        carried = self._carried.pop(name, None)
        return None if carried is None else carried[0]

    def carry(self, name: str, failing_since: float, window: float) -> None:
        """A wire named `name` closes while failing: its next namesake (within `window` seconds)
        inherits the failure. Older carried failures are forgotten."""
        now = time.monotonic()
        for old, (_, closed) in list(self._carried.items()):
            if now - closed > window:
                del self._carried[old]
        self._carried[name] = (failing_since, now)

    def stalled(self, limit: float, now: float | None = None) -> str | None:
        """Why a wire to this server is stuck, or None.

        Stuck: a round trip is running past its deadline (the event loop is starved or a deadline
        did not fire), or a wire still in use (a round trip within `limit` seconds) has had its
        round trips fail for `limit` seconds without one succeeding (a loop that cannot reach
        Redis: it consumes nothing). A wire that failed and was not used since (a producer's,
        between sends) is not stuck.
        """
        now = time.monotonic() if now is None else now
        for wire in list(self._wires):
            if wire.busy_until and now > wire.busy_until + _OVERDUE_MARGIN:
                return f"a round trip to Redis is {now - wire.busy_until:.1f}s past its deadline"
            failing = wire.failing_since
            if failing is not None and now - failing >= limit and now - wire.tried_at <= limit:
                where = f" (the loop on {wire.name})" if wire.name else ""
                return f"round trips to Redis have failed for {now - failing:.1f}s{where}"
        return None


class Wire:
    """One connection taken from `pool` and kept for this wire's lifetime.

    `timeout` is the default deadline of a round trip (plus the BLOCK of a blocking read);
    `progress` (optional) watches it for readiness, under `name`.
    """

    __slots__ = (
        "__weakref__", "_conn", "_pool", "_progress", "_scripts", "_timeout", "busy_until",
        "failing_since", "name", "tried_at",
    )  # fmt: skip

    def __init__(
        self,
        pool: ConnectionPool,
        scripts: Scripts,
        timeout: float = DEFAULT_TIMEOUT,
        progress: Progress | None = None,
        name: str | None = None,
    ) -> None:
        self._pool = pool
        self._scripts = scripts
        self._timeout = timeout
        self._conn: AbstractConnection | None = None
        self._progress = progress
        self.name = name
        self.busy_until = 0.0
        """Monotonic deadline of the round trip in flight (0.0 when idle)."""
        self.tried_at = 0.0
        """Monotonic start of the latest round trip."""
        self.failing_since = None if progress is None else progress.add(self, name)
        """Monotonic start of the first of the round trips that failed since the last success."""

    async def execute(
        self, commands: Sequence[tuple[Any, ...]], seconds: float | None = None
    ) -> list[Any]:
        """Send `commands` in one write, return one reply (or ResponseError) per command.

        `seconds` bounds the round trip (default: the wire's timeout plus any BLOCK); past it the
        call raises `TimeoutError` and the connection is dropped.
        """
        if seconds is None:
            seconds = self._timeout + block_seconds(commands)
        replies = await self._round_trip(commands, seconds)
        for reply in replies:
            if isinstance(reply, NoScriptError):
                return await self._scripts.recover(
                    commands, replies, partial(self._round_trip, seconds=seconds),
                    partial(self._load_scripts, seconds),
                )  # fmt: skip
        return replies

    async def call(self, *command: Any, seconds: float | None = None) -> Any:
        """One command; raises its error reply."""
        (reply,) = await self.execute([command], seconds)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def close(self) -> None:
        """Give the connection back to the pool (a failing wire hands its failure on)."""
        conn, self._conn = self._conn, None
        progress = self._progress
        if progress is not None and self.failing_since is not None and self.name is not None:
            progress.carry(self.name, self.failing_since, self._timeout * 2)
            self.failing_since = None
        if conn is not None:
            await self._pool.release(conn)

    async def _load_scripts(self, seconds: float) -> None:
        commands = [("SCRIPT", "LOAD", script.source) for script in self._scripts]
        for reply in await self._round_trip(commands, seconds):
            if isinstance(reply, ResponseError):
                raise reply

    async def _round_trip(self, commands: Sequence[tuple[Any, ...]], seconds: float) -> list[Any]:
        packed: list[Any] = []
        for command in commands:
            if command.__class__ is Multi:
                packed.append(_MULTI)
                for inner in command:
                    packed += _pack_large(inner) if inner.__class__ is Large else [_pack(inner)]
                packed.append(_EXEC)
            elif command.__class__ is Large:
                packed += _pack_large(command)
            else:
                packed.append(_pack(command))
        started = self.tried_at = time.monotonic()
        self.busy_until = started + seconds
        conn = self._conn
        # a timer that cancels this task at the deadline: cheaper than asyncio.timeout() per trip
        task = asyncio.current_task()
        assert task is not None
        expired: list[bool] = []
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + seconds, _expire, task, expired)
        try:
            if conn is None:
                # checkout, connect and handshake run inside the deadline too
                conn = self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            await conn.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for command in commands:
                if command.__class__ is Multi:
                    replies.append(await _read_multi(conn, len(command)))
                    continue
                try:
                    replies.append(await conn.read_response(timeout=math.inf))
                except ResponseError as error:
                    replies.append(error)
        except BaseException as exc:
            timer.cancel()
            self.busy_until = 0.0
            if expired and isinstance(exc, asyncio.CancelledError) and task.uncancel() == 0:
                exc = TimeoutError(f"no reply from Redis within {seconds:.3g}s")
            if not isinstance(exc, asyncio.CancelledError) and self.failing_since is None:
                self.failing_since = started  # cancelled by its caller: not Redis's failure
            if conn is not None:
                self._conn = None
                await asyncio.shield(_drop(self._pool, conn))
            if exc.__class__ is TimeoutError and expired:
                raise exc from None
            raise
        timer.cancel()
        self.busy_until = 0.0
        self.failing_since = None
        return replies


def _expire(task: asyncio.Task[Any], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


async def _drop(pool: ConnectionPool, conn: AbstractConnection) -> None:
    await conn.disconnect(nowait=True)
    await pool.release(conn)


class Large(tuple):  # type: ignore[type-arg]
    """A command with large arguments (message bodies): packed without copying them into one
    buffer (hiredis' packer would copy every argument into a single bytes object)."""

    __slots__ = ()


LARGE_ARGUMENT = 16 * 1024
"""An argument this large is written as it is (no copy into the command's buffer)."""


def _pack_large(command: Sequence[Any]) -> list[Any]:
    """RESP for `command` as a list of buffers written one after the other; arguments of 16 KiB
    and more are written as they are (no copy), the rest is packed by hiredis."""
    out: list[Any] = []
    small: list[bytes] = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, bytes | bytearray | memoryview) and len(arg) >= LARGE_ARGUMENT:
            small.append(b"$%d\r\n" % len(arg))
            out.append(b"".join(small))
            out.append(arg)
            small = [b"\r\n"]
        else:
            small.append(_bulk(arg))
    out.append(b"".join(small))
    return out


def _bulk(arg: Any) -> bytes:
    """One RESP bulk string (what hiredis makes of an argument)."""
    if isinstance(arg, bytes):
        data = arg
    elif isinstance(arg, str):
        data = arg.encode()
    elif isinstance(arg, int | float):
        data = repr(arg).encode() if isinstance(arg, float) else str(arg).encode()
    else:
        data = bytes(arg)
    return b"$%d\r\n%b\r\n" % (len(data), data)


class Multi(tuple):  # type: ignore[type-arg]
    """Commands sent as one MULTI ... EXEC (all keys in one slot). Its reply is EXEC's: a list
    with one reply per command, or the first error a command got when it was queued (nothing
    ran then: Redis discards the transaction)."""

    __slots__ = ()


_MULTI = _pack(("MULTI",))
_EXEC = _pack(("EXEC",))


async def _read_multi(conn: AbstractConnection, count: int) -> Any:
    """The replies of MULTI, `count` QUEUED (or errors), and EXEC; EXEC's reply, or the first
    queuing error."""
    failure: ResponseError | None = None
    for _ in range(count + 1):  # +OK, then one QUEUED per command
        try:
            await conn.read_response(timeout=math.inf)
        except ResponseError as error:
            failure = failure or error
    try:
        reply = await conn.read_response(timeout=math.inf)
    except ResponseError as error:  # EXECABORT: the queuing error says why
        return failure or error
    return failure if reply is None and failure is not None else reply
