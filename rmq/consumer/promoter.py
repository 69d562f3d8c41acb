"""The promoter: moves due delayed messages into their queue and due retries into the group's
retry stream, with the `promote` script (bounded batches; any number of promoters may run).

It sleeps until the next message is due (the script says how long), and a pub/sub message on
`<ns>:wake:<topic>` wakes it early when something is scheduled sooner than everything before it.
If the subscription is down, it still wakes every `promote_max_sleep` seconds.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from anyio.abc import TaskStatus
from redis.asyncio.client import PubSub

from ..calls import Call, PromoteReply
from ..connection import Backoff, is_transient
from ..context import Context
from ..router import WireSet

__all__ = ["Promoter"]

log = logging.getLogger("rmq.promoter")


class Promoter:
    """Promotes the delayed messages of `topic` and the retries of `groups` on that topic."""

    def __init__(self, ctx: Context, topic: str, groups: list[str]) -> None:
        self.ctx = ctx
        self.topic = topic
        self.groups = groups
        self.promoted = 0
        self._pubsub: PubSub | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Promote until cancelled (started once subscribed to wake-ups)."""
        settings = self.ctx.settings
        wire = self.ctx.conn.wires()
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        try:
            try:
                await self._subscribe()
            except Exception as exc:
                log.warning("no wake-ups for %s yet (%r); polling meanwhile", self.topic, exc)
            task_status.started()
            while True:
                try:
                    wait = await self.promote_once(wire)
                except Exception as exc:
                    level = logging.WARNING if is_transient(exc) else logging.ERROR
                    log.log(level, "promoting %s failed: %r", self.topic, exc)
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                if wait > 0:
                    await self._sleep(wait)
        finally:
            await wire.close()
            await self._unsubscribe()

    async def promote_once(self, wire: WireSet) -> float:
        """Move what is due on every queue; return the seconds until the next is due (0 = now)."""
        ctx = self.ctx
        settings = ctx.settings
        info = await ctx.topics.ensure(self.topic)
        calls = ctx.calls
        limit = settings.promote_batch
        promotes: list[Call[PromoteReply]] = []
        for queue_id in range(info.queues):
            promotes.append(calls.promote_delayed(self.topic, queue_id, limit))
            promotes += [calls.promote_retries(self.topic, queue_id, g, limit) for g in self.groups]
        wait_ms = settings.promote_max_sleep * 1000
        replies = await wire.execute([c.command for c in promotes], settings.socket_timeout)
        for call, reply in zip(promotes, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            promoted = call.result(reply)
            moved, wait = promoted.moved, promoted.wait_ms
            self.promoted += moved
            if moved >= limit:
                wait = 0  # more were due than one call moves
            if wait >= 0:
                wait_ms = min(wait_ms, wait)
        return max(0.0, wait_ms / 1000)

    async def _sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less if a wake-up message arrives."""
        seconds = max(seconds, self.ctx.settings.promote_min_sleep)
        try:
            pubsub = await self._subscribe()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while (left := deadline - loop.time()) > 0:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if message is not None:
                    return
        except Exception as exc:
            log.debug("wake-up subscription for %s failed: %r", self.topic, exc)
            await self._unsubscribe()
            await asyncio.sleep(seconds)

    async def _subscribe(self) -> PubSub:
        if self._pubsub is None:
            pubsub = self.ctx.conn.readers.pubsub()
            await pubsub.subscribe(self.ctx.keys.wake(self.topic))
            self._pubsub = pubsub
        return self._pubsub

    async def _unsubscribe(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await asyncio.shield(pubsub.aclose())
            except Exception as exc:
                log.debug("closing the wake-up subscription failed: %r", exc)
