"""Reading the state of topics and groups from Redis: what `rmq topic status`, `rmq group progress`
and the metrics collector report.

Everything is read in a few pipelined round trips of cheap commands, whatever the number of queues:

1. per queue: XLEN, XINFO GROUPS (last delivered id, entries read, lag, pending, consumers),
   ZCARD of the delayed and half-message sets (0 while those keys do not exist), and with
   `with_ids` the first and last entry (XRANGE/XREVRANGE COUNT 1);
2. per queue and group: `XPENDING key group - + 1` (the oldest pending entry: its id is a ms
   timestamp, so its age needs no scan), the dead-letter stream's XLEN, the retry set's ZCARD,
   XINFO GROUPS of the group's retry stream (`:rs:<group>`, read with the queue: its lag and
   pending entries count with the queue's), and XINFO CONSUMERS, whose names are matched against
   the apps that beat (`rmq.health.live_apps`, one more call): consumers are counted live or dead.

No command names keys of two queues, and nothing scans a pending list or a stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .connection import broker_error
from .context import Context
from .health import is_live, live_apps
from .ids import entry_ms
from .keys import QueueKeys
from .streams import Client
from .topics import TopicInfo

__all__ = [
    "GroupQueueState",
    "QueueState",
    "entry_ms",
    "half_key",
    "read_queues",
    "server_ms",
]

_CHUNK = 512


def half_key(queue: QueueKeys) -> str:
    """The queue's half (prepared, transactional) messages (`:half`)."""
    return queue.half


@dataclass(frozen=True, slots=True)
class GroupQueueState:
    """One consumer group on one queue."""

    group: str
    last_delivered_id: str
    entries_read: int | None
    lag: int | None
    """Entries not yet delivered to the group; None when Redis cannot tell (see README)."""
    pending: int
    consumers: int
    """Live consumers (their app beats, see `rmq.health`)."""
    oldest_pending_id: str | None
    oldest_pending_idle_ms: int | None
    """Time since the oldest pending entry was last delivered."""
    dlq_length: int
    retry_waiting: int
    dead_consumers: int = 0
    """Consumers Redis still lists whose app stopped beating."""
    live_names: frozenset[str] = frozenset()
    """The live consumers' names (to count distinct ones over queues)."""


@dataclass(frozen=True, slots=True)
class QueueState:
    """One queue (stream) of a topic, with every group found on it."""

    topic: str
    queue_id: int
    length: int
    delayed: int
    half: int
    first_id: str | None = None
    last_id: str | None = None
    groups: list[GroupQueueState] = field(default_factory=list)


async def server_ms(client: Client) -> int:
    """The Redis server's clock, in epoch ms."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _pipeline(client: Client, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run `commands` in pipelines of at most _CHUNK; results may be exceptions."""
    results: list[Any] = []
    for start in range(0, len(commands), _CHUNK):
        pipe = client.pipeline(transaction=False)
        for command in commands[start : start + _CHUNK]:
            if command[0] == "XPENDING":  # the extended form: one row per entry
                pipe.execute_command(*command, parse_detail=True)
            else:
                pipe.execute_command(*command)
        results.extend(await pipe.execute(raise_on_error=False))
    return results


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _retry_stream_group(reply: Any, group: str) -> dict[str, Any]:
    """The group's XINFO GROUPS row on its retry stream ({} while there is none)."""
    if isinstance(reply, BaseException):
        return {}
    return next((row for row in reply if _text(row["name"]) == group), {})


def _consumer_names(reply: Any) -> list[str]:
    """The names in an XINFO CONSUMERS reply ([] for an error: the group vanished meanwhile)."""
    if isinstance(reply, BaseException):
        return []
    return [_text(row["name"]) for row in reply]


def _first_id(reply: Any) -> str | None:
    if isinstance(reply, BaseException) or not reply:
        return None
    return _text(reply[0][0])


async def read_queues(
    ctx: Context,
    topics: Sequence[TopicInfo],
    *,
    groups: Sequence[str] | None = None,
    with_ids: bool = False,
) -> list[QueueState]:
    """The state of every queue of `topics` (only `groups`, when given), in two round trips."""
    client = ctx.conn.commands
    queues = [ctx.keys.queue(t.name, q) for t in topics for q in range(t.queues)]
    per_queue = 6 if with_ids else 4
    commands: list[tuple[Any, ...]] = []
    for q in queues:
        commands += [
            ("XLEN", q.stream),
            ("XINFO GROUPS", q.stream),
            ("ZCARD", q.delay),
            ("ZCARD", half_key(q)),
        ]
        if with_ids:
            commands += [("XRANGE", q.stream, "-", "+", "COUNT", 1)]
            commands += [("XREVRANGE", q.stream, "+", "-", "COUNT", 1)]
    replies = await _pipeline(client, commands)
    wanted = None if groups is None else set(groups)
    found: list[tuple[QueueKeys, list[dict[str, Any]]]] = []
    details: list[tuple[Any, ...]] = []
    for i, q in enumerate(queues):
        length, info, *_ = replies[i * per_queue : (i + 1) * per_queue]
        for reply in (length, replies[i * per_queue + 2], replies[i * per_queue + 3]):
            if isinstance(reply, BaseException):
                raise broker_error(reply, f"reading {q.stream}")
        rows = [] if isinstance(info, BaseException) else list(info)
        rows = [r for r in rows if wanted is None or _text(r["name"]) in wanted]
        found.append((q, rows))
        for row in rows:
            group = _text(row["name"])
            details += [
                ("XPENDING", q.stream, group, "-", "+", 1),
                ("XLEN", q.dlq(group)),
                ("ZCARD", q.retry(group)),
                ("XINFO GROUPS", q.retry_stream(group)),
                ("XINFO CONSUMERS", q.stream, group),
            ]
    extra = await _pipeline(client, details)
    live = await live_apps(ctx) if details else set()
    out: list[QueueState] = []
    n = 0
    for i, (q, rows) in enumerate(found):
        base = replies[i * per_queue : (i + 1) * per_queue]
        states: list[GroupQueueState] = []
        for row in rows:
            oldest, dlq, retry, retries, members = extra[n : n + 5]
            n += 5
            names = _consumer_names(members)
            live_names = frozenset(c for c in names if is_live(c, live))
            oldest_row = oldest[0] if isinstance(oldest, list) and oldest else None
            group = _text(row["name"])
            due = _retry_stream_group(retries, group)
            lag = _int_or_none(row.get("lag"))
            due_lag = _int_or_none(due.get("lag", 0))
            states.append(
                GroupQueueState(
                    group=group,
                    last_delivered_id=_text(row["last-delivered-id"]),
                    entries_read=_int_or_none(row.get("entries-read")),
                    lag=None if lag is None or due_lag is None else lag + due_lag,
                    pending=int(row["pending"]) + int(due.get("pending", 0)),
                    consumers=len(live_names),
                    oldest_pending_id=_text(oldest_row["message_id"]) if oldest_row else None,
                    oldest_pending_idle_ms=(
                        int(oldest_row["time_since_delivered"]) if oldest_row else None
                    ),
                    dlq_length=0 if isinstance(dlq, BaseException) else int(dlq),
                    retry_waiting=0 if isinstance(retry, BaseException) else int(retry),
                    dead_consumers=len(names) - len(live_names),
                    live_names=live_names,
                )
            )
        states.sort(key=lambda s: s.group)
        out.append(
            QueueState(
                topic=q.topic,
                queue_id=q.queue_id,
                length=int(base[0]),
                delayed=int(base[2]),
                half=int(base[3]),
                first_id=_first_id(base[4]) if with_ids else None,
                last_id=_first_id(base[5]) if with_ids else None,
                groups=states,
            )
        )
    return out
