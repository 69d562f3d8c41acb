"""Worker health: heartbeats in Redis (for `rmq worker check`) and the `/healthz` and `/readyz`
checks served by the worker runner.

Every worker process, once its consumer groups are declared and it consumes, adds itself to the
sorted set `<ns>:heartbeats:<module:app>` (member `<host>:<pid>`, score = epoch ms) every
`heartbeat_interval` seconds, and removes itself when it exits. It skips its beats while one of its
loops cannot reach Redis (a stalled wire, see `rmq.wire.Progress`): a worker that consumes nothing
is not alive for `rmq worker check` nor for the supervisor's `/readyz`.

`rmq worker check module:app` exits 0 when a process on the same host (a container's hostname is
its own) beat within three intervals, so a container health check needs no port. Old members are
pruned as workers beat, and the key expires when no worker of the app has beaten for a while.

**Live consumers.** An app that consumes (`app.run()`, an open pull consumer, `rmq consume
--group`) beats into `<ns>:consumers` (member: the app's name, which starts every consumer name
it uses in Redis; score: the server's clock) every `heartbeat_interval` (`Liveness`). A consumer
Redis lists in a group is *live* while its app beat within three intervals, else *dead*
(`live_apps`, `is_live`): that is what `rmq group consumers` and `rmq_consumers` report. An app
that stops beating removes itself, and a drained consumer deletes its own empty entry from each
group (`drop_empty_consumers`: never one that owns a pending entry).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio

from .context import Context
from .keys import NamespaceKeys
from .streams import Client

__all__ = [
    "STALE_INTERVALS",
    "Heartbeat",
    "Liveness",
    "alive_members",
    "drop_empty_consumers",
    "heartbeat_key",
    "is_live",
    "live_apps",
    "member_name",
]

log = logging.getLogger("rmq.health")

STALE_INTERVALS = 3
"""A heartbeat older than this many intervals means the worker is not alive."""
_PRUNE_INTERVALS = 20


def heartbeat_key(namespace: str, app_id: str) -> str:
    """The sorted set of the heartbeats of every worker process of `app_id` ("module:attr")."""
    return NamespaceKeys(namespace).heartbeats(app_id)


def member_name(pid: int | None = None, host: str | None = None) -> str:
    """This process's member in the heartbeat set: `<host>:<pid>`."""
    return f"{host or socket.gethostname()}:{pid or os.getpid()}"


class Heartbeat:
    """Beats for one worker process until cancelled; removes itself when it stops.

    `problem()` (optional) says why the process should not count as alive now (None: it is
    fine); no beat is written meanwhile.
    """

    def __init__(
        self, ctx: Context, app_id: str, problem: Callable[[], str | None] | None = None
    ) -> None:
        self.ctx = ctx
        self.key = heartbeat_key(ctx.settings.namespace, app_id)
        self.member = member_name()
        self.interval = ctx.settings.heartbeat_interval
        self.problem = problem

    async def beat(self) -> None:
        """One heartbeat: add this process, drop long-dead members, refresh the key's TTL."""
        now = int(time.time() * 1000)
        interval_ms = int(self.interval * 1000)
        pipe = self.ctx.conn.commands.pipeline(transaction=False)
        pipe.zadd(self.key, {self.member: now})
        pipe.zremrangebyscore(self.key, "-inf", now - _PRUNE_INTERVALS * interval_ms)
        pipe.pexpire(self.key, _PRUNE_INTERVALS * interval_ms)
        await pipe.execute()

    async def run(self) -> None:
        """Beat every `heartbeat_interval` seconds (errors are logged, not raised)."""
        withheld: str | None = None
        try:
            while True:
                problem = self.problem() if self.problem is not None else None
                if problem is not None:
                    if withheld is None:
                        log.warning("not beating while a loop is stuck: %s", problem)
                    withheld = problem
                else:
                    if withheld is not None:
                        log.info("beating again: the loops reach Redis")
                        withheld = None
                    try:
                        await self.beat()
                    except Exception as exc:
                        log.warning("heartbeat failed: %s", exc)
                await anyio.sleep(self.interval)
        finally:
            with anyio.move_on_after(self.ctx.settings.socket_timeout, shield=True):
                try:
                    await self.ctx.conn.commands.zrem(self.key, self.member)
                except Exception as exc:
                    log.debug("could not remove the heartbeat: %r", exc)


async def alive_members(
    client: Client, key: str, interval: float, *, host: str | None = None
) -> list[str]:
    """Members of `key` that beat within `STALE_INTERVALS` intervals (on `host`, when given)."""
    since = int(time.time() * 1000) - int(STALE_INTERVALS * interval * 1000)
    raw: Sequence[Any] = await client.zrangebyscore(key, since, "+inf")
    members = [m.decode() if isinstance(m, bytes) else str(m) for m in raw]
    if host is not None:
        members = [m for m in members if m.rpartition(":")[0] == host]
    return members


# ---------------------------------------------------------------------- live consumers


def _live_ttl_ms(interval: float) -> int:
    return int(STALE_INTERVALS * interval * 1000)


def is_live(consumer: str, apps: set[str]) -> bool:
    """Whether `consumer` (a name in XINFO CONSUMERS) belongs to one of the live `apps`: it is an
    app's name, or an app's name and one suffix (`-p1` for a pull consumer, `-admin`)."""
    return consumer in apps or consumer.rpartition("-")[0] in apps


async def live_apps(ctx: Context) -> set[str]:
    """The names of the apps that beat within `STALE_INTERVALS` heartbeat intervals."""
    calls = ctx.calls
    ttl = _live_ttl_ms(ctx.settings.heartbeat_interval)
    live: list[str] = await calls.run(calls.consumer_beat("", ttl))
    return set(live)


class Liveness:
    """Keeps an app's consumers live in Redis while something of it consumes.

    `join()` beats at once and starts beating every `heartbeat_interval`; `leave()` undoes one
    join, and the last one stops beating and removes the app. Beat failures are logged, never
    raised: a consumer that cannot beat shows as dead, it keeps consuming.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._ctx: Context | None = None
        self._users = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def beating(self) -> bool:
        return self._task is not None

    async def join(self, ctx: Context) -> None:
        """Count one more user (a run, a pull consumer); the first starts beating on `ctx`."""
        self._users += 1
        if self._task is not None:
            return
        self._ctx = ctx
        await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def leave(self) -> None:
        self._users = max(0, self._users - 1)
        if not self._users:
            await self.close()

    async def close(self) -> None:
        """Stop beating and remove the app from the live ones (whoever still joined)."""
        self._users = 0
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(task, return_exceptions=True)
            await self._beat(leave=True)
        self._ctx = None

    async def _run(self) -> None:
        while self._ctx is not None:
            await anyio.sleep(self._ctx.settings.heartbeat_interval)
            await self._beat()

    async def _beat(self, *, leave: bool = False) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        try:
            calls = ctx.calls
            ttl = _live_ttl_ms(ctx.settings.heartbeat_interval)
            with anyio.fail_after(ctx.settings.socket_timeout):
                await calls.run(calls.consumer_beat(self.name, ttl, leave=leave))
        except Exception as exc:
            if not self._failing:
                log.warning("could not record this app's consumers as live: %r", exc)
            self._failing = True
            return
        if self._failing:
            log.info("consumers recorded as live again")
            self._failing = False


async def drop_empty_consumers(ctx: Context, consumers: Iterable[tuple[str, str, str]]) -> int:
    """Delete each (stream, group, consumer name) whose consumer owns no pending entry (one
    script each, pipelined); returns how many were deleted. Errors are logged, not raised."""
    calls = ctx.calls
    drops = [calls.drop_consumer(*consumer) for consumer in dict.fromkeys(consumers)]
    if not drops:
        return 0
    try:
        replies = await calls.run_all(drops)
    except Exception as exc:
        log.warning("could not remove this app's empty consumers: %r", exc)
        return 0
    return sum(int(r) for r in replies if isinstance(r, int))
