"""The half messages of one producer group: prepare, commit, rollback and check_claim, through
the transaction batcher (concurrent callers share round trips and script calls), with the
scripts' replies turned into results or rmq errors.

Outcomes (committed or rolled back) are remembered for `dedup_window` seconds, so a commit or
rollback repeated within that window (a retry after a lost reply, a check-back racing the
producer) is answered instead of failing.
"""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..calls import Call, HalfClaims
from ..context import Context
from ..errors import TransactionError, TransactionNotFound, TransactionStateError
from ..tracing import hooks as tracing
from .batcher import Batcher, Merge
from .types import HalfMessage

__all__ = ["HalfStore"]


class HalfStore:
    """Prepare, commit and roll back the half messages of producer group `group`."""

    def __init__(self, ctx: Context, group: str) -> None:
        self.ctx = ctx
        self.group = group
        self.batcher = Batcher(ctx)
        self._registered: set[str] = set()

    def _where(self, topic: str, queue_id: int, msg_id: str) -> str:
        return f"half message {msg_id} on {topic}[{queue_id}]"

    async def prepare(self, half: HalfMessage) -> None:
        """Store `half` invisibly; the first time a topic is used, record it for the checkers."""
        ctx, group = self.ctx, self.group
        kind, value = half.when or ("", 0)
        call = ctx.calls.prepare(
            half.topic, half.queue_id, group, (kind, value, *half.encoded.values), 1
        )
        commands: list[tuple[Any, ...]] = [call.command]
        register = half.topic not in self._registered
        if register:  # before the half message exists, so a checker can always find it
            commands.insert(0, ("SADD", ctx.keys.producer_topics(group), half.topic))
        replies = await self.batcher.call("prepare", *commands, merge=Merge.of(call))
        if register:
            self._registered.add(half.topic)
        (outcome,) = call.result(replies[-1])
        if isinstance(outcome, bytes):
            where = self._where(half.topic, half.queue_id, half.msg_id)
            raise TransactionStateError(f"{where} was {outcome.decode()} already")

    async def commit(self, topic: str, queue_id: int, msg_ids: list[str]) -> list[tuple[str, int]]:
        """Commit `msg_ids` (all on this queue) in one script, all or none.

        Returns (entry id, due ms) per message: the entry id is "" for a delayed message, which
        becomes visible at the due time (0 when not delayed).
        """
        call = self.ctx.calls.commit(topic, queue_id, self.group, msg_ids)
        (reply,) = await self.batcher.call("commit", call.command, merge=Merge.of(call))
        self._check(call, reply, topic, queue_id)
        metrics.transactions(topic, "commit", len(msg_ids))
        if tracing.on_transaction is not None:  # rmq.tracing: an event on the current span
            tracing.on_transaction("commit", topic, queue_id, msg_ids)
        pairs = reply[1:]
        return [((pairs[i] or b"").decode(), int(pairs[i + 1])) for i in range(0, len(pairs), 2)]

    async def rollback(self, topic: str, queue_id: int, msg_ids: list[str]) -> list[str]:
        """Roll back `msg_ids` (all on this queue); returns the ids that were not found."""
        call = self.ctx.calls.rollback(topic, queue_id, self.group, msg_ids)
        (reply,) = await self.batcher.call("rollback", call.command)
        self._check(call, reply, topic, queue_id)
        if int(reply[1]):
            metrics.transactions(topic, "rollback", int(reply[1]))
        if tracing.on_transaction is not None:  # rmq.tracing: an event on the current span
            tracing.on_transaction("rollback", topic, queue_id, msg_ids)
        return [m.decode() for m in reply[2:]]

    def claim(self, topic: str, queue_id: int, limit: int) -> Call[HalfClaims]:
        """The check_claim call for this group on one queue."""
        return self.ctx.calls.check_claim(topic, queue_id, self.group, limit)

    def _check(self, call: Call[Any], reply: Any, topic: str, queue_id: int) -> None:
        """Raise the rmq error a commit or rollback reply stands for."""
        reply = call.result(reply)
        status = reply[0]
        if status == b"ok":
            return
        where = self._where(topic, queue_id, reply[1].decode())
        if status == b"rolled_back":
            raise TransactionStateError(f"{where} was rolled back already; it cannot be committed")
        if status == b"committed":
            raise TransactionStateError(f"{where} was committed already; it cannot be rolled back")
        if status == b"not_found":
            raise TransactionNotFound(
                f"no {where}: it was never prepared there, or resolved more than dedup_window "
                f"({self.ctx.settings.dedup_window:g}s) ago"
            )
        owner = reply[2].decode() if len(reply) > 2 else "?"
        raise TransactionError(
            f"{where} belongs to producer group {owner!r}, not {self.group!r}; nothing changed"
        )
