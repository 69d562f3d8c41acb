"""Reading transactions without touching them: pending half messages, and the ones discarded
after `transaction_max_checks` checks (what `rmq transaction list|count` runs, through
`rmq.admin`).

Reads go queue by queue (every command or script names the keys of one queue), are pipelined
over the queues and merged: pending half messages by next check time (the `half_list` script,
which unpacks the stored payload, `CHUNK` index members per call), discarded ones by the time
they were discarded (XRANGE on each queue's `:half:x:<group>` stream).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..codec import decode_fields
from ..connection import broker_error
from ..context import Context
from ..errors import ConfigError, DecodeError
from ..ids import entry_key, entry_ms
from ..message import Message
from ..topics import TopicInfo

__all__ = [
    "CHUNK",
    "DiscardedTransaction",
    "PendingTransaction",
    "TransactionCount",
    "counts",
    "discarded",
    "pending",
]

CHUNK = 1000
"""The most index members one `half_list` call reads (bounds how long Redis is busy per call)."""


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class PendingTransaction:
    """A half message nobody has committed or rolled back yet."""

    topic: str
    queue_id: int
    msg_id: str
    group: str
    """The producer group that prepared it (whose checkers are asked about it)."""
    checks: int
    """How many check-backs claimed it so far (0 before the first)."""
    prepared_at: datetime
    next_check_at: datetime
    """When a checker may ask about it (again): the immunity time after preparing, then one
    check interval after each check."""
    delay_seconds: float | None
    """Sent with a delay: it becomes visible this long after its commit."""
    deliver_at: datetime | None
    """Sent with a fixed delivery time: it becomes visible then (or at its commit, if later)."""
    message: Message | None
    """The message as the checker sees it (`delivery_count` is the check count), or None when it
    does not decode (then `error` says why)."""
    error: str | None = None

    @property
    def cursor(self) -> tuple[int, int, str]:
        """Where it sorts in a listing: (next check ms, queue id, msg_id)."""
        return round(self.next_check_at.timestamp() * 1000), self.queue_id, self.msg_id


@dataclass(frozen=True, slots=True)
class DiscardedTransaction:
    """A half message rolled back after `transaction_max_checks` checks without an answer."""

    topic: str
    queue_id: int
    id: str
    """Its entry id in the group's discarded-transactions stream (`:half:x:<group>`)."""
    msg_id: str | None
    group: str
    checks: int
    prepared_at: datetime | None
    discarded_at: datetime
    reason: str
    """Why it was discarded: "max_checks"."""
    message: Message | None
    """The message it would have delivered, or None when it does not decode (see `error`)."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionCount:
    """Half messages on one queue: pending, and discarded (None when no group is given)."""

    queue_id: int
    pending: int
    discarded: int | None


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _message(
    topic: str, queue_id: int, group: str, checks: int, fields: Any
) -> tuple[Message | None, str | None]:
    try:
        d = decode_fields("", fields)
    except DecodeError as exc:
        return None, exc.reason
    msg = Message._received(
        d.body, d.tag, d.keys, d.properties, d.msg_id, topic, queue_id, "", group, "", checks
    )
    return msg, None


def _pending(topic: str, queue_id: int, row: Sequence[Any]) -> PendingTransaction:
    raw_id, next_ms, group, checks, prepared_ms, kind, value, fields = row
    msg_id, group_name, how = _text(raw_id), _text(group), _text(kind)
    delay = int(value) if how else 0
    message, error = _message(topic, queue_id, group_name, int(checks), list(fields))
    return PendingTransaction(
        topic=topic,
        queue_id=queue_id,
        msg_id=msg_id,
        group=group_name,
        checks=int(checks),
        prepared_at=_datetime(int(prepared_ms)),
        next_check_at=_datetime(int(next_ms)),
        delay_seconds=delay / 1000 if how == "after" else None,
        deliver_at=_datetime(delay) if how == "at" else None,
        message=message,
        error=error,
    )


def _discarded(
    topic: str, queue_id: int, group: str, entry_id: bytes, raw: dict[bytes, bytes]
) -> DiscardedTransaction:
    checks = int(raw.get(b"checks") or 0)
    prepared = raw.get(b"prepared_ms")
    raw_id = raw.get(b"i")
    message, error = _message(topic, queue_id, group, checks, raw)
    dead_id = entry_id.decode()
    return DiscardedTransaction(
        topic=topic,
        queue_id=queue_id,
        id=dead_id,
        msg_id=_text(raw_id) if raw_id else None,
        group=_text(raw.get(b"group") or group),
        checks=checks,
        prepared_at=_datetime(int(prepared)) if prepared else None,
        discarded_at=_datetime(entry_ms(dead_id)),
        reason=_text(raw.get(b"reason") or b""),
        message=message,
        error=error,
    )


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be an int >= 1, got {limit!r}")


async def counts(ctx: Context, info: TopicInfo, group: str | None) -> list[TransactionCount]:
    """Pending half messages per queue (of every group, or of `group`), and with a group its
    discarded transactions per queue: ZCARD and XLEN, one pipelined round trip."""
    pipe = ctx.conn.commands.pipeline(transaction=False)
    for q in range(info.queues):
        queue = ctx.keys.queue(info.name, q)
        pipe.zcard(queue.half_group(group) if group else queue.half)
        if group:
            pipe.xlen(queue.half_discarded(group))
    replies = await pipe.execute()
    if not group:
        return [TransactionCount(q, int(n), None) for q, n in enumerate(replies)]
    return [
        TransactionCount(q, int(replies[2 * q]), int(replies[2 * q + 1]))
        for q in range(info.queues)
    ]


async def pending(
    ctx: Context,
    info: TopicInfo,
    queue_ids: Sequence[int],
    *,
    group: str | None,
    limit: int,
    after: PendingTransaction | None = None,
) -> list[PendingTransaction]:
    """Up to `limit` half messages of `queue_ids` (of every group, or of `group`), the next due
    for a check first, ordered by (next check, queue id, msg_id).

    `after` pages forward: pass the last one of the previous page.
    """
    _check_limit(limit)
    chunk = min(limit, CHUNK)
    calls = ctx.calls
    cursors: dict[int, tuple[int | str, str]] = {q: ("", "") for q in queue_ids}
    if after is not None:
        at, queue_id, last = after.cursor
        for q in queue_ids:
            # messages due at the same ms sort by queue id, and scores are whole ms
            cursors[q] = (at, last) if q == queue_id else (at + 1 if q < queue_id else at, "")
    found: dict[int, list[PendingTransaction]] = {q: [] for q in queue_ids}
    todo = list(queue_ids)
    while todo:
        lists = [calls.half_list(info.name, q, group, chunk, cursors[q]) for q in todo]
        more = []
        for q, reply in zip(todo, await calls.results(lists), strict=True):
            rest = reply[2:]
            found[q].extend(_pending(info.name, q, rest[i : i + 8]) for i in range(0, len(rest), 8))
            if reply[0] is not None and len(found[q]) < limit:
                cursors[q] = (int(reply[0]), _text(reply[1]))
                more.append(q)
        todo = more
    merged = heapq.merge(*found.values(), key=lambda t: t.cursor)
    return [t for _, t in zip(range(limit), merged, strict=False)]


async def discarded(
    ctx: Context,
    info: TopicInfo,
    queue_ids: Sequence[int],
    group: str,
    *,
    limit: int,
    after: DiscardedTransaction | None = None,
) -> list[DiscardedTransaction]:
    """Up to `limit` of `group`'s discarded transactions on `queue_ids`, oldest first (by the
    time they were discarded, across queues).

    `after` pages forward: pass the last one of the previous page.
    """
    _check_limit(limit)
    commands = []
    for q in queue_ids:
        start = "-"
        if after is not None:
            start = f"({after.id}" if q <= after.queue_id else after.id
        stream = ctx.keys.queue(info.name, q).half_discarded(group)
        commands.append(("XRANGE", stream, start, "+", "COUNT", limit))
    pages = await ctx.conn.scripts.pipeline(ctx.conn.commands, commands)
    rows = []
    for q, page in zip(queue_ids, pages, strict=True):
        if isinstance(page, BaseException):
            raise broker_error(page, f"listing the discarded transactions of {info.name}[{q}]")
        rows.append([(entry_key(i), q, i, fields) for i, fields in page])
    out: list[DiscardedTransaction] = []
    for _, q, entry_id, fields in heapq.merge(*rows, key=lambda row: row[:2]):
        out.append(_discarded(info.name, q, group, entry_id, _fields(fields)))
        if len(out) >= limit:
            break
    return out


def _fields(fields: Any) -> dict[bytes, bytes]:
    if isinstance(fields, dict):
        return fields
    flat = list(fields)
    return dict(zip(flat[0::2], flat[1::2], strict=False))
