"""Retention: trimming queue streams (and the groups' retry streams) with the `trim` script.

RocketMQ keeps messages 72 hours and consuming deletes nothing; rmq does the same, with one
promise more: trimming never removes an entry a subscribed group has not acknowledged
(undelivered, or pending in its PEL), nor one a broadcasting instance has not read, unless a hard
cap (`retention_max_len`, `retention_max_age`) is set; then the cap wins and every entry it removes
unacknowledged is counted and logged.

Workers run one `Trimmer` for the topics they consume (next to the scheduler): every
`trim_interval` seconds (with jitter, so workers do not trim in step, and the topics spread over
the interval) it calls the script once per queue of each topic, all queues in one pipeline, and
again for the queues whose call stopped at `trim_batch` entries. Any number of
trimmers may run: the script is atomic and idempotent. `Admin.trim` (`rmq topic trim`) runs the
same calls on demand, with a dry run.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus

from . import metrics
from .connection import is_transient
from .context import Context
from .dlq import trim_dead_letters
from .settings import Settings
from .streams import call
from .topics import TopicInfo

__all__ = ["Policy", "StreamTrim", "Trimmer", "policy", "trim_topic"]

log = logging.getLogger("rmq.retention")

_MAX_ROUNDS = 1000
"""Most script calls per queue in one `trim_topic` (each removes at most `trim_batch` entries)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The retention of one topic: the settings, overridden by the topic's own values."""

    retention: float
    """Seconds an acknowledged entry is kept."""
    max_len: int | None
    """Hard cap on entries per stream (None: no cap)."""
    max_age: float | None
    """Hard cap on entry age in seconds (None: no cap)."""
    dlq_retention: float | None = None
    """Seconds dead letters are kept (None: until purged)."""

    def script_args(self) -> tuple[int, int, int]:
        return (
            round(self.retention * 1000),
            self.max_len or 0,
            round(self.max_age * 1000) if self.max_age else 0,
        )


def policy(settings: Settings, info: TopicInfo) -> Policy:
    """The retention of `info`'s topic (a topic value 0 turns a cap off for that topic)."""

    def pick(name: str) -> Any:
        own = getattr(info, name)
        return getattr(settings, name) if own is None else own

    return Policy(pick("retention"), pick("retention_max_len") or None,
                  pick("retention_max_age") or None, pick("dlq_retention") or None)  # fmt: skip


@dataclass(slots=True)
class StreamTrim:
    """What trimming did (or, in a dry run, would do) to one stream of a queue."""

    queue_id: int
    stream: str
    """"queue" (the queue stream) or "retry:<group>" (a group's retry stream)."""
    removed: int = 0
    removed_unacked: int = 0
    """Removed by a hard cap although some group had not acknowledged them."""
    kept: int = 0
    """Entries older than the retention kept because a group has not acknowledged them (or an
    entry before them); counted only when asked for, up to a limit."""
    bound: str | None = None
    """The entries below this id were removed (the last bound used)."""
    held_by: str | None = None
    """What set the bound: "retention", "group <name>", "broadcast <group>" or "cap"."""


async def topic_groups(ctx: Context, topic: str) -> list[str]:
    """The groups subscribed to `topic` (consumer groups and broadcasting groups), sorted."""
    members = await call(ctx.conn.commands, "SMEMBERS", ctx.keys.topic_groups(topic))
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


async def trim_topic(
    ctx: Context,
    info: TopicInfo,
    groups: list[str],
    *,
    dry_run: bool = False,
    count_kept: int = 0,
    rules: Policy | None = None,
) -> list[StreamTrim]:
    """Trim every queue of `info` (one script call per queue per round, pipelined), repeating
    for the queues that stopped at `trim_batch` entries; a dry run makes one round.

    Returns one `StreamTrim` per stream: per queue, the queue stream then each group's retry
    stream. Raises the first error (after the other queues were trimmed).
    """
    settings = ctx.settings
    rules = rules or policy(settings, info)
    calls = ctx.calls
    args = (*rules.script_args(), settings.trim_batch, int(dry_run), count_kept)
    names = ["queue", *(f"retry:{g}" for g in groups)]
    totals = {q: [StreamTrim(q, name) for name in names] for q in range(info.queues)}
    todo = list(range(info.queues))
    error: BaseException | None = None
    for _ in range(1 if dry_run else _MAX_ROUNDS):
        if not todo:
            break
        trims = [calls.trim(info.name, q, groups, args) for q in todo]
        replies = await calls.run_all(trims)
        again = []
        for q, trim_call, raw in zip(todo, trims, replies, strict=True):
            try:
                reply = trim_call.result(raw)
            except Exception as exc:
                error = error or exc
                continue
            more = False
            for row, total in zip(reply, totals[q], strict=True):
                more |= _add(total, row)
            if more:
                again.append(q)
        todo = again
    if error is not None:
        raise error
    return [row for q in range(info.queues) for row in totals[q]]


def _add(total: StreamTrim, row: list[Any]) -> bool:
    """Add one script reply row to `total`; True when the call stopped at its budget."""
    removed, unacked, kept, bound, held_by, more = row
    total.removed += int(removed)
    total.removed_unacked += int(unacked)
    total.kept = int(kept)
    bound = bound.decode() if isinstance(bound, bytes) else str(bound)
    held_by = held_by.decode() if isinstance(held_by, bytes) else str(held_by)
    if bound:
        total.bound, total.held_by = bound, held_by
    return bool(int(more))


class Trimmer:
    """Trims the queues of `topics` every `trim_interval` seconds until cancelled: one loop for
    all of them, the topics spread evenly over the interval."""

    def __init__(self, ctx: Context, topics: str | list[str]) -> None:
        self.ctx = ctx
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.removed = 0
        self.removed_unacked = 0
        self.dead_letters_removed = 0
        self.rounds = 0
        """Topics trimmed (a topic's trim counts once per pass)."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Trim until cancelled; errors are logged and the topic is tried again next round."""
        interval = self.ctx.settings.trim_interval
        task_status.started()
        if not self.topics:
            return
        await anyio.sleep(random.uniform(0.1, 1.0) * interval)  # workers started together spread
        while True:
            pause = random.uniform(0.8, 1.2) * interval / len(self.topics)
            for topic in self.topics:
                try:
                    await self.trim_topic(topic)
                except Exception as exc:
                    level = logging.WARNING if is_transient(exc) else logging.ERROR
                    log.log(level, "trimming failed (retrying in %.0fs): %r", interval, exc,
                            extra={"topic": topic})  # fmt: skip
                else:
                    self.rounds += 1
                await anyio.sleep(pause)

    async def trim_once(self) -> list[StreamTrim]:
        """Trim every queue of every topic once (nothing for a topic that does not exist)."""
        rows: list[StreamTrim] = []
        for topic in self.topics:
            rows += await self.trim_topic(topic)
            self.rounds += 1
        return rows

    async def trim_topic(self, topic: str) -> list[StreamTrim]:
        """Trim every queue of `topic` once (nothing when the topic does not exist)."""
        ctx = self.ctx
        info = await ctx.topics.get(topic)
        if info is None:
            return []
        groups = await topic_groups(ctx, topic)
        rows = await trim_topic(ctx, info, groups)
        removed = sum(r.removed for r in rows)
        self.removed += removed
        unacked = 0
        for row in rows:
            if row.removed_unacked:
                unacked += row.removed_unacked
                log.warning(
                    "retention cap removed %d unacknowledged entries of %s[%d] %s",
                    row.removed_unacked, topic, row.queue_id, row.stream,
                )  # fmt: skip
        self.removed_unacked += unacked
        dead = 0
        dlq_retention = policy(ctx.settings, info).dlq_retention
        if dlq_retention is not None:
            dead = await trim_dead_letters(ctx, topic, range(info.queues), groups, dlq_retention)
            self.dead_letters_removed += dead
        if removed or dead:
            metrics.trimmed(topic, removed, unacked, dead)
            log.debug("trimmed %d entries and %d dead letters", removed, dead,
                      extra={"topic": topic})  # fmt: skip
        return rows
