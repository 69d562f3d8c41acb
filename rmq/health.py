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
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from .context import Context
from .keys import NamespaceKeys
from .streams import Client

__all__ = ["STALE_INTERVALS", "Heartbeat", "alive_members", "heartbeat_key", "member_name"]

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
