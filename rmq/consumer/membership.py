"""Group membership and queue allocation for orderly consumption (RocketMQ's rebalance).

Live members heartbeat into `<ns>:members:<topic>:<group>` (server clock); a member silent for
longer than `lease_ttl` is gone. Every member sorts the live list and derives its own share of the
queues with the same strategy, so no coordinator is needed; a queue's lease (an owner-checked key
with a TTL) makes sure at most one member consumes it at a time even while members disagree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..context import Context
from .spec import AllocateStrategy

__all__ = [
    "AllocateStrategy",
    "Lease",
    "Membership",
    "allocate_averagely",
    "allocate_by_circle",
]


def allocate_averagely(queues: int, members: Sequence[str], me: str) -> list[int]:
    """RocketMQ's AllocateMessageQueueAveragely: contiguous blocks; the first `queues % n`
    members get one more. Members beyond the queue count get nothing."""
    if me not in members or queues <= 0:
        return []
    n, index = len(members), list(members).index(me)
    base, extra = divmod(queues, n)
    size = base + (1 if index < extra else 0)
    start = index * base + min(index, extra)
    return list(range(start, start + size))


def allocate_by_circle(queues: int, members: Sequence[str], me: str) -> list[int]:
    """RocketMQ's AllocateMessageQueueAveragelyByCircle: queue i goes to member i % n."""
    if me not in members:
        return []
    index = list(members).index(me)
    return list(range(index, queues, len(members)))


class Membership:
    """Heartbeats of one member of an orderly group."""

    def __init__(self, ctx: Context, topic: str, group: str, member: str) -> None:
        self.ctx = ctx
        self.topic = topic
        self.group = group
        self.member = member

    async def heartbeat(self) -> list[str]:
        """Record this member as alive; return the sorted live members."""
        return await self._call(self.member)

    async def live(self) -> list[str]:
        return await self._call("")

    async def leave(self) -> list[str]:
        return await self._call(self.member, "leave")

    async def _call(self, member: str, *extra: str) -> list[str]:
        calls = self.ctx.calls
        return await calls.run(calls.heartbeat(self.topic, self.group, member, *extra))


class Lease:
    """The orderly lease of one queue for one group, held under a fresh token."""

    def __init__(self, ctx: Context, topic: str, queue_id: int, group: str, member: str) -> None:
        self.ctx = ctx
        self.key = ctx.keys.queue(topic, queue_id).lease(group)
        self.token = f"{member}:{os.urandom(4).hex()}"

    async def _op(self, op: str) -> bool:
        calls = self.ctx.calls
        ttl = int(self.ctx.settings.lease_ttl * 1000)
        return await calls.run(calls.lease(self.key, op, self.token, ttl))

    async def acquire(self) -> bool:
        return await self._op("acquire")

    async def renew(self) -> bool:
        return await self._op("renew")

    async def release(self) -> bool:
        return await self._op("release")
