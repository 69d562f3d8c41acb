"""Administration of topics, groups, offsets and messages: what the `rmq` command line runs.

```python
async with rmq.App() as app:
    await app.admin.create_topic("orders", queues=8)
    progress = await app.admin.group_progress("orders", "billing")
    await app.reset_offset("orders", "billing", to=datetime(2024, 5, 1, tzinfo=UTC))
```

Every command or script names the keys of one queue only. Reads are bounded: state comes from
`rmq.state` (a few pipelined round trips), and searches (`find_message`, `query_key`) walk a stream
server-side in slices of `scan_chunk` entries per script call, so Redis is never blocked for long.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, Literal

from . import browse
from .admin_results import (
    ConsumerInfo,
    GroupProgress,
    GroupSummary,
    Position,
    QueueProgress,
    QueueReset,
    TopicStatus,
    TopicTrim,
    max_or_none,
    sum_or_none,
)
from .browse import Bound, StoredMessage
from .connection import broker_error
from .consumer.pull import PullConsumer
from .context import Context
from .dlq import DeadLetters
from .errors import ConfigError, GroupNotFound, TopicNotFound
from .health import Liveness, is_live, live_apps
from .ids import entry_ms
from .keys import QueueKeys
from .message import Message, SendResult
from .names import validate_group, validate_keys, validate_topic
from .outgoing import Outgoing
from .producer import Producer
from .retention import StreamTrim, policy, topic_groups, trim_topic
from .state import GroupQueueState, read_queues, server_ms
from .topics import MAX_QUEUES, TopicInfo
from .transaction import browse as transactions
from .transaction.browse import DiscardedTransaction, PendingTransaction, TransactionCount

__all__ = [
    "Admin",
    "ConsumerInfo",
    "DiscardedTransaction",
    "GroupProgress",
    "GroupSummary",
    "PendingTransaction",
    "Position",
    "QueueProgress",
    "QueueReset",
    "StoredMessage",
    "StreamTrim",
    "TopicStatus",
    "TopicTrim",
    "TransactionCount",
]


def _position(to: Position) -> str:
    if to in ("first", "last"):
        return str(to)
    if isinstance(to, datetime):
        moment = to if to.tzinfo else to.replace(tzinfo=UTC)
        return str(max(0, int(moment.timestamp() * 1000)))
    raise ConfigError(f"reset to 'first', 'last' or a datetime, got {to!r}")


class Admin:
    """Topic, group, offset and message operations over an open `App` (`app.admin`)."""

    scan_chunk = 1000
    """Entries one search script call reads at most (bounds how long Redis is busy per call)."""
    reset_count_limit = 10_000
    """Entries `reset_offset` counts at most per queue to set an exact lag."""
    kept_count_limit = 10_000
    """Entries `trim` counts at most per stream as kept back by a group."""

    def __init__(
        self,
        context: Callable[[], Context],
        producer: Producer,
        name: str,
        liveness: Liveness | None = None,
    ) -> None:
        self._context = context
        self._producer = producer
        self._name = name
        self._liveness = liveness

    @property
    def ctx(self) -> Context:
        return self._context()

    # ------------------------------------------------------------------ server and topics

    async def server_info(self) -> dict[str, str]:
        """The server's name ("redis" or "valkey"), version and mode."""
        info = await self.ctx.conn.commands.info("server")
        name = str(info.get("server_name") or "redis")
        version = str(info.get(f"{name}_version") or info.get("redis_version", "?"))
        return {"name": name, "version": version, "mode": str(info.get("redis_mode", "?"))}

    async def topics(self) -> list[TopicInfo]:
        """Every topic of the namespace, sorted by name."""
        return await self.ctx.topics.list()

    async def topic(self, topic: str) -> TopicInfo:
        """The metadata of `topic`; raises `TopicNotFound`."""
        info = await self.ctx.topics.get(validate_topic(topic))
        if info is None:
            raise TopicNotFound(f"topic {topic!r} does not exist (rmq topic list shows them)")
        return info

    async def create_topic(
        self, topic: str, queues: int | None = None, **retention: float | None
    ) -> tuple[TopicInfo, bool]:
        """Create `topic` (default `default_queues` queues); returns (metadata, created).

        `retention`, `retention_max_len`, `retention_max_age` and `dlq_retention` override the
        settings of the same names for this topic (0 turns the setting's cap, or the dead-letter
        retention, off here). Creating an existing topic with the same queue count only applies
        the retention values given; with another count it raises `ConfigError` (that would move
        sharding keys to other queues).
        """
        wanted = queues or self.ctx.settings.default_queues
        existing = await self.ctx.topics.get(validate_topic(topic))
        if existing is not None:
            if existing.queues != wanted:
                raise ConfigError(
                    f"topic {topic!r} exists with {existing.queues} queues, not {wanted}"
                )
            if retention and existing.replace(**retention) != existing:
                existing = await self.ctx.topics.update(topic, **retention)
            return existing, False
        info = await self.ctx.topics.create(topic, wanted, **retention)
        return info, info.queues == wanted

    async def grow_topic(self, topic: str, queues: int) -> tuple[TopicInfo, int]:
        """Give `topic` `queues` queues (grow only); returns (metadata, queues added).

        Every consumer group of the topic is created on the new queues first, from their first
        entry, so nothing sent there is skipped; then the count is published. Producers use the
        new queues within 30 s (their topic cache); running workers read them once restarted
        (until then what lands there waits, nothing is lost). Sharding keys map to other queues
        afterwards: per-key order holds within the old count and within the new one, not
        across the change.
        """
        info = await self.topic(topic)
        if not 1 <= queues <= MAX_QUEUES:
            raise ConfigError(f"a topic has 1..{MAX_QUEUES} queues, got {queues}")
        if queues < info.queues:
            raise ConfigError(
                f"topic {topic!r} has {info.queues} queues: queues can be added, never removed "
                "(removing one would strand its messages)"
            )
        if queues == info.queues:
            return info, 0
        states = await read_queues(self.ctx, [info])
        groups = sorted({g.group for q in states for g in q.groups})
        client = self.ctx.conn.commands
        first = self.ctx.keys.queue(topic, 0)
        with_retries = [g for g in groups if await client.exists(first.retry_stream(g))]
        calls = self.ctx.calls
        declares = []
        for q in range(info.queues, queues):
            queue = calls.queue(topic, q)
            declares += [calls.declare_group(queue.stream, g, "first") for g in groups]
            declares += [
                calls.declare_group(queue.retry_stream(g), g, "first") for g in with_retries
            ]
        await calls.results(declares)
        grown = info.replace(queues=queues)
        await client.hset(self.ctx.keys.topics, topic, grown.to_json())
        self.ctx.topics._cache.pop(topic, None)
        return grown, queues - info.queues

    async def update_topic(self, topic: str, **retention: float | None) -> TopicInfo:
        """Set the topic's `retention`, `retention_max_len`, `retention_max_age` or
        `dlq_retention` (None: back to the setting; 0 for a cap or `dlq_retention`: off for this
        topic). Running trimmers follow."""
        return await self.ctx.topics.update(topic, **retention)

    async def trim(self, topic: str, *, dry_run: bool = False) -> TopicTrim:
        """Trim the topic's queues now, like the workers' trimmers do every `trim_interval`.

        Never removes an entry a subscribed group has not acknowledged, unless a hard cap is
        set (those are counted in `removed_unacked`). A dry run removes nothing and reports what
        one call per queue would remove (at most `trim_batch` entries per stream). Each stream's
        `kept` counts, up to `kept_count_limit`, the entries older than the retention that a
        group still holds back.
        """
        info = await self.topic(topic)
        groups = await topic_groups(self.ctx, info.name)
        rules = policy(self.ctx.settings, info)
        streams = await trim_topic(
            self.ctx, info, groups, dry_run=dry_run, count_kept=self.kept_count_limit, rules=rules
        )
        return TopicTrim(info.name, dry_run, rules, groups, streams)

    async def delete_topic(self, topic: str) -> int:
        """Delete the topic and every key of its queues (messages, DLQs, ...); returns keys removed.

        Destructive: pending and unconsumed messages are gone. Stop the topic's workers first, or
        they declare it again.
        """
        validate_topic(topic)
        client = self.ctx.conn.commands
        keys: list[bytes | str] = []
        cursor = 0
        pattern = f"{self.ctx.keys.ns}:{{{topic}:*"
        while True:
            cursor, batch = await client.scan(cursor, match=pattern, count=1000)
            keys.extend(batch)
            if not cursor:
                break
        removed = 0
        for start in range(0, len(keys), 500):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + 500]:
                pipe.unlink(key)
            removed += sum(int(n) for n in await pipe.execute())
        pipe = client.pipeline(transaction=False)
        pipe.hdel(self.ctx.keys.topics, topic)
        pipe.unlink(self.ctx.keys.topic_groups(topic))
        dropped, groups = await pipe.execute()
        if not removed and not dropped and not groups:
            raise TopicNotFound(f"topic {topic!r} does not exist")
        self.ctx.topics._cache.pop(topic, None)
        return removed + int(dropped) + int(groups)

    async def topic_status(self, topic: str) -> TopicStatus:
        """Per queue: length, first and last entry id, delayed messages, and the groups found."""
        info = await self.topic(topic)
        queues = await read_queues(self.ctx, [info], with_ids=True)
        groups = sorted({g.group for q in queues for g in q.groups})
        return TopicStatus(
            info.name, info.created_ms, groups, queues, policy(self.ctx.settings, info)
        )

    # ------------------------------------------------------------------ groups

    async def groups(self, topic: str | None = None) -> list[GroupSummary]:
        """Every consumer group of `topic` (or of every topic), with lag and pending totals."""
        topics = [await self.topic(topic)] if topic else await self.topics()
        queues = await read_queues(self.ctx, topics)
        now = await server_ms(self.ctx.conn.commands)
        by_group: dict[tuple[str, str], list[GroupQueueState]] = {}
        for q in queues:
            for g in q.groups:
                by_group.setdefault((q.topic, g.group), []).append(g)
        return [
            GroupSummary(
                topic=t,
                group=g,
                lag=sum_or_none([s.lag for s in states]),
                pending=sum(s.pending for s in states),
                consumers=len(frozenset().union(*(s.live_names for s in states))),
                oldest_pending_age_seconds=max_or_none([_age(s, now) for s in states]),
                dlq_length=sum(s.dlq_length for s in states),
            )
            for (t, g), states in sorted(by_group.items())
        ]

    async def group_exists(self, topic: str, group: str) -> bool:
        """Whether `group` subscribed to `topic` (a consumer group on its queues, or a
        broadcasting group); raises `TopicNotFound` for a missing topic."""
        info = await self.topic(topic)
        validate_group(group)
        client = self.ctx.conn.commands
        if await client.sismember(self.ctx.keys.topic_groups(info.name), group):
            return True
        queues = await read_queues(self.ctx, [info], groups=[group])
        return any(q.groups for q in queues)

    async def require_group(self, topic: str, group: str) -> TopicInfo:
        """The topic's metadata; raises `TopicNotFound` or `GroupNotFound`."""
        if not await self.group_exists(topic, group):
            raise GroupNotFound(
                f"group {group!r} does not exist on topic {topic!r} (rmq group list {topic} "
                "shows its groups)"
            )
        return await self.topic(topic)

    async def group_progress(self, topic: str, group: str) -> GroupProgress:
        """Lag, pending, oldest pending age, last delivered id and consumers, per queue."""
        info = await self.topic(topic)
        validate_group(group)
        queues = await read_queues(self.ctx, [info], groups=[group], with_ids=True)
        now = await server_ms(self.ctx.conn.commands)
        rows = [
            QueueProgress(
                queue_id=q.queue_id, length=q.length, last_id=q.last_id,
                last_delivered_id=g.last_delivered_id, lag=g.lag, pending=g.pending,
                oldest_pending_id=g.oldest_pending_id, oldest_pending_age_seconds=_age(g, now),
                consumers=g.consumers, dead_consumers=g.dead_consumers, dlq_length=g.dlq_length,
                retry_waiting=g.retry_waiting,
            )
            for q in queues
            for g in q.groups
        ]  # fmt: skip
        if not rows:
            raise GroupNotFound(f"group {group!r} does not exist on topic {topic!r}")
        return GroupProgress(info.name, group, rows)

    async def group_consumers(self, topic: str, group: str) -> list[ConsumerInfo]:
        """The group's consumers over every queue: live or dead (its app stopped beating, see
        `rmq.health`), pending entries and idle time. Live ones first, then by name."""
        info = await self.topic(topic)
        validate_group(group)
        pipe = self.ctx.conn.commands.pipeline(transaction=False)
        for q in range(info.queues):
            pipe.xinfo_consumers(self.ctx.keys.queue(topic, q).stream, group)
        replies = await pipe.execute(raise_on_error=False)
        if all(isinstance(r, BaseException) for r in replies):
            raise GroupNotFound(f"group {group!r} does not exist on topic {topic!r}")
        live = await live_apps(self.ctx)
        merged: dict[str, tuple[int, int, list[int]]] = {}
        for queue_id, rows in enumerate(replies):
            if isinstance(rows, BaseException):
                continue
            for row in rows:
                name = row["name"].decode()
                pending, idle, queues = merged.get(name, (0, -1, []))
                idle_ms = int(row["idle"])
                merged[name] = (
                    pending + int(row["pending"]),
                    idle_ms if idle < 0 else min(idle, idle_ms),
                    [*queues, queue_id],
                )
        rows = [
            ConsumerInfo(
                name, pending, idle / 1000, queues, "live" if is_live(name, live) else "dead"
            )
            for name, (pending, idle, queues) in sorted(merged.items())
        ]
        return sorted(rows, key=lambda c: c.state != "live")

    async def delete_group(self, topic: str, group: str) -> int:
        """Destroy the group on every queue, with its pending list, retries and dead letters.

        Destructive: what the group had not acknowledged is dropped for this group (other groups
        keep their own progress). Stop its workers first, or they declare it again. Returns the
        number of queues the group existed on.
        """
        info = await self.topic(topic)
        validate_group(group)
        keys = self.ctx.keys
        pipe = self.ctx.conn.commands.pipeline(transaction=False)
        for q in range(info.queues):
            queue = keys.queue(topic, q)
            pipe.execute_command("XGROUP", "DESTROY", queue.stream, group)
            for key in _group_keys(queue, group):
                pipe.unlink(key)
        pipe.unlink(keys.members(topic, group))
        pipe.srem(keys.topic_groups(topic), group)
        replies = await pipe.execute(raise_on_error=False)
        per_queue = 1 + len(_group_keys(keys.queue(topic, 0), group))
        destroyed = 0
        for q in range(info.queues):
            reply = replies[q * per_queue]
            if isinstance(reply, BaseException):
                if "no such key" in str(reply).lower():
                    continue
                raise broker_error(reply, f"deleting group {group!r}")
            destroyed += int(reply)
        if not destroyed and not replies[-1]:
            raise GroupNotFound(f"group {group!r} does not exist on topic {topic!r}")
        return destroyed

    async def reset_offset(self, topic: str, group: str, to: Position) -> list[QueueReset]:
        """Move the group's position on every queue to a time, the first or the last message.

        Uses XGROUP SETID (one script per queue): stream ids are ms timestamps, so a reset to a
        time is exact; the group's lag stays exact where it can be (see `rmq/lua/reset_offset.lua`).
        Running consumers follow without a restart. Pending entries are not touched: they stay
        pending and are still delivered again or claimed; a reset drops nothing.
        """
        info = await self.topic(topic)
        validate_group(group)
        target = _position(to)
        await self.group_progress(topic, group)  # raises if the group does not exist
        calls = self.ctx.calls
        resets = [
            calls.reset_offset(topic, q, group, target, self.reset_count_limit)
            for q in range(info.queues)
        ]
        out: list[QueueReset] = []
        for q, (call, reply) in enumerate(zip(resets, await calls.run_all(resets), strict=True)):
            if isinstance(reply, BaseException) and "no such" in str(reply):
                continue  # the group is missing on this queue only
            position, entries_read = call.result(reply)
            out.append(QueueReset(q, position, entries_read))
        return out

    # ------------------------------------------------------------------ messages

    async def message_at(self, topic: str, queue_id: int, offset: str) -> StoredMessage | None:
        """The message stored at `offset` (its entry id) in queue `queue_id`, or None."""
        info = await self.topic(topic)
        _check_queue(info, queue_id)
        return await browse.message_at(self.ctx, info, queue_id, offset)

    async def find_message(
        self, topic: str, msg_id: str, *, window: float = 60.0
    ) -> StoredMessage | None:
        """A message by msg_id (mqadmin queryMsgById), or None.

        An rmq msg_id carries its birth time, so only the entries stored within `window` seconds
        of it are read, in bounded slices. An entry id (messages of other clients) is looked up
        in every queue.
        """
        info = await self.topic(topic)
        return await browse.find_message(
            self.ctx, info, msg_id, window=window, chunk=self.scan_chunk
        )

    async def query_key(
        self, topic: str, key: str, *, start: Bound = None, end: Bound = None, limit: int = 32
    ) -> list[StoredMessage]:
        """Messages sent with `key` among their keys (mqadmin queryMsgByKey), oldest first.

        There is no key index: every queue's stream is walked server-side, `scan_chunk` entries
        per script call, so the cost grows with the range: narrow it with `start` and `end`.
        """
        info = await self.topic(topic)
        (key,) = validate_keys([key])
        return await browse.query_key(
            self.ctx, info, key, start=start, end=end, limit=limit, chunk=self.scan_chunk
        )

    async def messages(
        self,
        topic: str,
        *,
        queue: int | None = None,
        start: Bound = None,
        end: Bound = None,
        count: int = 20,
    ) -> list[StoredMessage]:
        """Up to `count` stored messages, oldest first (mqadmin printMsg), of one or all queues."""
        info = await self.topic(topic)
        if queue is not None:
            _check_queue(info, queue)
        queues = range(info.queues) if queue is None else [queue]
        return await browse.messages(self.ctx, info, queues, start=start, end=end, count=count)

    async def tail(
        self,
        topic: str,
        *,
        start: Bound | Literal["first", "last"] = "last",
        poll: float = 0.1,
    ) -> AsyncGenerator[StoredMessage, None]:
        """Yield the topic's messages as they are stored, without a group (nothing is acked).

        `start` "last" (default) shows only new messages; "first", an entry id or a time start
        earlier. Each queue is polled with its own XREAD every `poll` seconds while idle.
        """
        info = await self.topic(topic)
        async with aclosing(browse.tail(self.ctx, info, start=start, poll=poll)) as stored:
            async for msg in stored:
                yield msg

    async def send(
        self,
        topic: str,
        body: Any,
        *,
        tag: str | None = None,
        keys: Sequence[str] | None = None,
        properties: dict[str, str] | None = None,
        sharding_key: str | None = None,
        delay: float | None = None,
        delay_level: int | None = None,
    ) -> SendResult:
        """Send one message (mqadmin sendMessage) to a random queue, or by `sharding_key`.

        Random, not round-robin: a command line sends one message per process, and a round robin
        that starts afresh each time would always pick queue 0.
        """
        selector = None if sharding_key else _random_queue
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       delay_level=delay_level)  # fmt: skip
        return await self._producer.deliver(out)

    def dead_letters(self, topic: str, group: str) -> DeadLetters:
        """A group's dead-letter queue on `topic` (`rmq dlq ...`)."""
        return DeadLetters(self.ctx, topic, group)

    # ------------------------------------------------------------------ transactions

    async def transaction_counts(
        self, topic: str, group: str | None = None
    ) -> list[TransactionCount]:
        """Half messages per queue: pending (of every producer group, or of `group`) and, with a
        group, its discarded transactions."""
        info = await self.topic(topic)
        if group is not None:
            validate_group(group)
        return await transactions.counts(self.ctx, info, group)

    async def pending_transactions(
        self,
        topic: str,
        *,
        group: str | None = None,
        queue: int | None = None,
        limit: int = 50,
        after: PendingTransaction | None = None,
    ) -> list[PendingTransaction]:
        """Up to `limit` half messages nobody resolved yet (of every producer group, or of
        `group`), the next due for a check first. `after` (the last one seen) pages forward.

        Read-only: listing claims nothing and counts no check.
        """
        info = await self.topic(topic)
        if group is not None:
            validate_group(group)
        queues = _queues(info, queue)
        return await transactions.pending(
            self.ctx, info, queues, group=group, limit=limit, after=after
        )

    async def discarded_transactions(
        self,
        topic: str,
        group: str,
        *,
        queue: int | None = None,
        limit: int = 50,
        after: DiscardedTransaction | None = None,
    ) -> list[DiscardedTransaction]:
        """Up to `limit` of producer group `group`'s transactions rolled back after
        `transaction_max_checks` checks without an answer, oldest first. `after` (the last one
        seen) pages forward."""
        info = await self.topic(topic)
        validate_group(group)
        queues = _queues(info, queue)
        return await transactions.discarded(self.ctx, info, queues, group, limit=limit, after=after)

    async def consume(
        self,
        topic: str,
        group: str,
        *,
        count: int,
        wait: float,
        start: Literal["first", "last"] = "last",
        invisible: float = 30.0,
    ) -> AsyncGenerator[Message, None]:
        """Receive up to `count` messages as `group` within `wait` seconds (mqadmin
        consumeMessage), with a pull consumer.

        Each message is acknowledged after the caller's loop body for it returns, so one the
        caller did not finish is delivered again after `invisible` seconds. A new group starts
        at `start`.
        """
        deadline = time.monotonic() + wait
        got = 0
        name = f"{self._name}-admin"
        async with PullConsumer(
            self.ctx, topic, group, name, start=start, liveness=self._liveness
        ) as pc:
            while got < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                batch = await pc.receive(min(32, count - got), invisible, remaining)
                try:
                    while batch and got < count:
                        msg = batch.pop(0)
                        yield msg
                        await pc.ack(msg)
                        got += 1
                finally:
                    for msg in batch:  # not shown (over the count, or the caller stopped)
                        await pc.nack(msg)


def _group_keys(queue: QueueKeys, group: str) -> list[str]:
    """The keys one group owns on one queue (the stream's consumer group aside)."""
    return [
        queue.dlq(group), queue.invisible(group), queue.retry(group), queue.retry_payload(group),
        queue.retry_stream(group), queue.lease(group), queue.broadcast_offsets(group),
    ]  # fmt: skip


def _check_queue(info: TopicInfo, queue_id: int) -> None:
    if not 0 <= queue_id < info.queues:
        raise ConfigError(f"topic {info.name!r} has queues 0..{info.queues - 1}, not {queue_id}")


def _queues(info: TopicInfo, queue_id: int | None) -> list[int]:
    """Every queue of the topic, or only `queue_id` (checked)."""
    if queue_id is None:
        return list(range(info.queues))
    _check_queue(info, queue_id)
    return [queue_id]


def _random_queue(queues: int, _msg: Message) -> int:
    return random.randrange(queues)


def _age(state: GroupQueueState, now_ms: int) -> float | None:
    if state.oldest_pending_id is None:
        return None
    return max(0.0, (now_ms - entry_ms(state.oldest_pending_id)) / 1000)
