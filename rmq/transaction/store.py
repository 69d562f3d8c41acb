"""The half messages of one producer group: the prepare, commit, rollback and check_claim scripts,
their keys and arguments, and their replies decoded into results or rmq errors.

Outcomes (committed or rolled back) are remembered for `dedup_window` seconds, so a commit or
rollback repeated within that window (a retry after a lost reply, a check-back racing the
producer) is answered instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..context import Context
from ..errors import TransactionError, TransactionNotFound, TransactionStateError
from .batcher import Batcher, Command, Merge
from .types import HalfMessage

__all__ = ["Claimed", "ClaimReply", "HalfStore"]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A half message claimed for a check-back: its stored fields and which check this is."""

    msg_id: str
    checks: int
    fields: list[bytes]


@dataclass(frozen=True, slots=True)
class ClaimReply:
    """One check_claim call: what was claimed or discarded, and how long until more is due."""

    wait_ms: int
    discarded: list[str]
    claimed: list[Claimed]


@dataclass(frozen=True, slots=True)
class _Keys:
    """The keys of each script on one queue, for one group (built once per queue)."""

    prepare: tuple[str, ...]
    commit: tuple[str, ...]
    rollback: tuple[str, ...]
    claim: tuple[str, ...]
    wake: str

    @classmethod
    def of(cls, ctx: Context, topic: str, queue_id: int, group: str) -> _Keys:
        q = ctx.keys.queue(topic, queue_id)
        half = (q.half, q.half_group(group), q.half_payload, q.half_done)
        return cls(
            prepare=half,
            commit=(q.stream, q.delay, q.delay_payload, *half, q.half_done_expiry),
            rollback=(*half, q.half_done_expiry),
            claim=(*half, q.half_done_expiry, q.half_discarded(group)),
            wake=ctx.keys.wake(topic),
        )


class HalfStore:
    """Prepare, commit and roll back the half messages of producer group `group`."""

    def __init__(self, ctx: Context, group: str) -> None:
        self.ctx = ctx
        self.group = group
        self.batcher = Batcher(ctx)
        self._registered: set[str] = set()
        self._queues: dict[tuple[str, int], _Keys] = {}

    def _keys(self, topic: str, queue_id: int) -> _Keys:
        keys = self._queues.get((topic, queue_id))
        if keys is None:
            keys = self._queues[topic, queue_id] = _Keys.of(self.ctx, topic, queue_id, self.group)
        return keys

    @property
    def _ttl_ms(self) -> int:
        return int(self.ctx.settings.dedup_window * 1000)

    def _where(self, topic: str, queue_id: int, msg_id: str) -> str:
        return f"half message {msg_id} on {topic}[{queue_id}]"

    async def prepare(self, half: HalfMessage) -> None:
        """Store `half` invisibly; the first time a topic is used, record it for the checkers."""
        ctx, group = self.ctx, self.group
        kind, value = half.when or ("", 0)
        immunity = int(ctx.settings.transaction_check_immunity * 1000)
        keys = self._keys(half.topic, half.queue_id).prepare
        head = ctx.conn.scripts["prepare"].evalsha_args(keys, (group, immunity))
        values = (kind, value, *half.args)
        commands: list[Command] = [(*head, *values)]
        register = half.topic not in self._registered
        if register:  # before the half message exists, so a checker can always find it
            commands.insert(0, ("SADD", ctx.keys.producer_topics(group), half.topic))
        merge = Merge(("prepare", keys), head, values, 1, _split_prepare)
        replies = await self.batcher.call("prepare", *commands, merge=merge)
        if register:
            self._registered.add(half.topic)
        (outcome,) = replies[-1]
        if isinstance(outcome, bytes):
            where = self._where(half.topic, half.queue_id, half.msg_id)
            raise TransactionStateError(f"{where} was {outcome.decode()} already")

    async def commit(self, topic: str, queue_id: int, msg_ids: list[str]) -> list[tuple[str, int]]:
        """Commit `msg_ids` (all on this queue) in one script, all or none.

        Returns (entry id, due ms) per message: the entry id is "" for a delayed message, which
        becomes visible at the due time (0 when not delayed).
        """
        keys = self._keys(topic, queue_id)
        head = self.ctx.conn.scripts["commit"].evalsha_args(
            keys.commit, (self.group, self._ttl_ms, keys.wake)
        )
        merge = Merge(("commit", keys.commit), head, tuple(msg_ids), len(msg_ids), _split_commit)
        (reply,) = await self.batcher.call("commit", (*head, *msg_ids), merge=merge)
        self._check(reply, topic, queue_id)
        metrics.transactions(topic, "commit", len(msg_ids))
        pairs = reply[1:]
        return [((pairs[i] or b"").decode(), int(pairs[i + 1])) for i in range(0, len(pairs), 2)]

    async def rollback(self, topic: str, queue_id: int, msg_ids: list[str]) -> list[str]:
        """Roll back `msg_ids` (all on this queue); returns the ids that were not found."""
        keys = self._keys(topic, queue_id).rollback
        args = (self.group, self._ttl_ms, *msg_ids)
        (reply,) = await self.batcher.call(
            "rollback", self.ctx.conn.scripts["rollback"].evalsha_args(keys, args)
        )
        self._check(reply, topic, queue_id)
        if int(reply[1]):
            metrics.transactions(topic, "rollback", int(reply[1]))
        return [m.decode() for m in reply[2:]]

    def claim_command(self, topic: str, queue_id: int, limit: int) -> Command:
        """The check_claim call for this group on one queue."""
        settings = self.ctx.settings
        args = (
            self.group, int(settings.transaction_check_interval * 1000),
            settings.transaction_max_checks, limit, self._ttl_ms,
        )  # fmt: skip
        keys = self._keys(topic, queue_id).claim
        return self.ctx.conn.scripts["check_claim"].evalsha_args(keys, args)

    @staticmethod
    def claim_reply(reply: list[Any]) -> ClaimReply:
        rest = reply[2:]
        claimed = [
            Claimed(rest[i].decode(), int(rest[i + 1]), rest[i + 2]) for i in range(0, len(rest), 3)
        ]
        return ClaimReply(int(reply[0]), [m.decode() for m in reply[1]], claimed)

    def _check(self, reply: list[Any], topic: str, queue_id: int) -> None:
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


def _split_prepare(reply: Any, counts: Sequence[int]) -> list[Any] | None:
    """A merged prepare's reply (one outcome per message) -> one reply per request."""
    if not isinstance(reply, list) or len(reply) != sum(counts):
        return None
    parts, start = [], 0
    for n in counts:
        parts.append(reply[start : start + n])
        start += n
    return parts


def _split_commit(reply: Any, counts: Sequence[int]) -> list[Any] | None:
    """A merged commit's reply ("ok" and a pair per message) -> one reply per request; None when
    the commit changed nothing (some message was rolled back, unknown or of another group): each
    request is then committed on its own, all or none."""
    if not isinstance(reply, list) or not reply or reply[0] != b"ok":
        return None
    pairs = reply[1:]
    if len(pairs) != 2 * sum(counts):
        return None
    parts, start = [], 0
    for n in counts:
        parts.append([b"ok", *pairs[start : start + 2 * n]])
        start += 2 * n
    return parts
