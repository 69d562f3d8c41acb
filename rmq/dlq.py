"""Dead-letter queues: what a dead letter records, and the operations on a group's DLQ.

Each (queue, group) has a dead-letter stream `<ns>:{<topic>:<q>}:dlq:<group>`. An entry holds
metadata (reason, error, attempts, first_failure_ms, last_failure_ms, topic, queue, offset = the
message's entry id in its queue, group; `lost` = 1 when the payload was gone) and the original
fields, each prefixed with `o:`, exactly as they were stored.

`app.dead_letters(topic, group)` returns a `DeadLetters` handle: count, entries, get, find by
msg_id, replay (one atomic script per message: back to the group through its retry stream, or to
the whole topic), purge, and purge by age (`purge_older_than`; workers do it every `trim_interval`
when `dlq_retention` is set).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .codec import decode_entry
from .connection import broker_error
from .context import Context
from .errors import ConfigError, DecodeError
from .ids import entry_key
from .message import Message
from .names import validate_group, validate_topic
from .state import server_ms
from .streams import call

__all__ = [
    "DeadLetter", "DeadLetterInfo", "DeadLetters", "describe_error", "trim_dead_letters",
]  # fmt: skip

ReplayTarget = Literal["group", "topic"]
_PAGE = 500


def describe_error(error: BaseException | None, limit: int = 1000) -> str:
    """`Type: message`, truncated to `limit` characters (never a traceback)."""
    if error is None:
        return ""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(slots=True)
class DeadLetterInfo:
    """Why and how an entry is dead-lettered; becomes the DLQ entry's metadata fields."""

    reason: str
    error: str = ""
    attempts: int = 1
    first_failure_ms: int | None = None
    origin: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def fields(self, topic: str, queue_id: int, group: str, offset: str) -> list[str]:
        now = str(int(time.time() * 1000))
        first = str(self.first_failure_ms) if self.first_failure_ms else now
        out = [
            "reason", self.reason,
            "error", self.error,
            "attempts", str(self.attempts),
            "first_failure_ms", first,
            "last_failure_ms", now,
            "topic", topic,
            "queue", str(queue_id),
            "offset", self.origin or offset,
            "group", group,
        ]  # fmt: skip
        for key, value in self.extra.items():
            out += [key, value]
        return out


def _ms(raw: bytes | None) -> datetime | None:
    return datetime.fromtimestamp(int(raw) / 1000, UTC) if raw else None


def _text(raw: bytes | None) -> str:
    return raw.decode(errors="replace") if raw else ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message of a group."""

    topic: str
    group: str
    queue_id: int
    id: str
    """The dead-letter entry id (in the DLQ stream of `queue_id`)."""
    reason: str
    error: str
    attempts: int
    first_failure_at: datetime | None
    last_failure_at: datetime | None
    offset: str
    """The message's entry id in its queue stream when it was first delivered."""
    msg_id: str | None
    fields: dict[bytes, bytes]
    """The original stream entry's fields, exactly as stored."""
    message: Message | None
    """The decoded message, or None when the entry is undecodable or its payload was lost."""
    lost: bool

    @classmethod
    def parse(
        cls, topic: str, group: str, queue_id: int, dead_id: str, raw: dict[bytes, bytes]
    ) -> DeadLetter:
        original = {k[2:]: v for k, v in raw.items() if k.startswith(b"o:")}
        offset = _text(raw.get(b"offset"))
        message: Message | None = None
        try:
            if original:
                d = decode_entry(offset, original)
                message = Message._received(
                    d.body, d.tag, d.keys, d.properties, d.msg_id, topic, queue_id, offset,
                    group, "", 1, d.retries, d.origin, d.first_failure_ms,
                )  # fmt: skip
        except DecodeError:
            message = None
        raw_id = original.get(b"i")
        return cls(
            topic=topic,
            group=group,
            queue_id=queue_id,
            id=dead_id,
            reason=_text(raw.get(b"reason")),
            error=_text(raw.get(b"error")),
            attempts=int(raw.get(b"attempts") or 1),
            first_failure_at=_ms(raw.get(b"first_failure_ms")),
            last_failure_at=_ms(raw.get(b"last_failure_ms")),
            offset=offset,
            msg_id=raw_id.decode(errors="replace") if raw_id else None,
            fields=original,
            message=message,
            lost=raw.get(b"lost") == b"1",
        )


class DeadLetters:
    """The dead-letter queue of one consumer group on one topic (all its queues)."""

    def __init__(self, ctx: Context, topic: str, group: str) -> None:
        self.ctx = ctx
        self.topic = validate_topic(topic)
        self.group = validate_group(group)

    async def _queue_ids(self) -> range:
        info = await self.ctx.topics.get(self.topic)
        return range(info.queues if info else 0)

    def _dlq(self, queue_id: int) -> str:
        return self.ctx.keys.queue(self.topic, queue_id).dlq(self.group)

    async def counts(self) -> dict[int, int]:
        """Dead letters per queue id."""
        queue_ids = await self._queue_ids()
        pipe = self.ctx.conn.commands.pipeline(transaction=False)
        for queue_id in queue_ids:
            pipe.xlen(self._dlq(queue_id))
        return dict(zip(queue_ids, await pipe.execute(), strict=True))

    async def count(self) -> int:
        """All dead letters of the group on the topic."""
        return sum((await self.counts()).values())

    async def entries(
        self, limit: int = 100, *, queue_id: int | None = None, after: str = "-"
    ) -> list[DeadLetter]:
        """Up to `limit` dead letters, oldest first (by dead-letter time) across queues.

        `after` (an entry id) pages forward: pass the last `id` seen, with its `queue_id`.
        """
        if limit < 1:
            raise ConfigError("limit must be >= 1")
        queue_ids = [queue_id] if queue_id is not None else list(await self._queue_ids())
        start = after if after == "-" else f"({after}"
        commands = [("XRANGE", self._dlq(q), start, "+", "COUNT", limit) for q in queue_ids]
        pages = await self.ctx.conn.scripts.pipeline(self.ctx.conn.commands, commands)
        rows = heapq.merge(
            *[
                [(entry_key(i), q, i, f) for i, f in page]
                for q, page in zip(queue_ids, pages, strict=True)
            ]
        )
        out = []
        for _, q, raw_id, fields in rows:
            out.append(DeadLetter.parse(self.topic, self.group, q, raw_id.decode(), fields))
            if len(out) >= limit:
                break
        return out

    async def get(self, queue_id: int, dead_id: str) -> DeadLetter | None:
        """One dead letter by queue and dead-letter entry id."""
        rows = await call(self.ctx.conn.commands, "XRANGE", self._dlq(queue_id), dead_id, dead_id)
        if not rows:
            return None
        return DeadLetter.parse(self.topic, self.group, queue_id, rows[0][0].decode(), rows[0][1])

    async def find(self, msg_id: str) -> list[DeadLetter]:
        """The dead letters of one message (scans the DLQ; it is usually small)."""
        return [letter for letter in await self.everything() if letter.msg_id == msg_id]

    async def replay(
        self,
        letters: Iterable[DeadLetter] | None = None,
        *,
        to: ReplayTarget = "group",
        dry_run: bool = False,
    ) -> list[DeadLetter]:
        """Put dead letters back (all of them when `letters` is None); return those replayed.

        `to="group"` sends each one to this group only, through its retry stream (fresh retry
        count); `to="topic"` appends a plain copy to the queue, for every group. Each move is one
        atomic script: a crash mid-replay neither loses nor doubles a message. Letters whose
        payload was lost are skipped. `dry_run` only lists what would be replayed.
        """
        if to not in ("group", "topic"):
            raise ConfigError("replay to 'group' or 'topic'")
        chosen = list(letters) if letters is not None else await self.everything()
        if dry_run:
            return [letter for letter in chosen if not letter.lost]
        calls = self.ctx.calls
        done: list[DeadLetter] = []
        for chunk in _chunks(chosen, _PAGE):
            replays = [
                calls.dlq_replay(self.topic, letter.queue_id, self.group, letter.id, to)
                for letter in chunk
            ]
            for letter, new_id in zip(chunk, await calls.results(replays), strict=True):
                if new_id is not None:
                    done.append(letter)
        return done

    async def purge(self, letters: Iterable[DeadLetter] | None = None) -> int:
        """Delete dead letters for good (all of them when `letters` is None); return how many."""
        commands = self.ctx.conn.commands
        if letters is None:
            total = 0
            for queue_id, count in (await self.counts()).items():
                if count:
                    await commands.delete(self._dlq(queue_id))
                    total += count
            return total
        by_queue: dict[int, list[str]] = {}
        for letter in letters:
            by_queue.setdefault(letter.queue_id, []).append(letter.id)
        removed = 0
        for queue_id, ids in by_queue.items():
            removed += int(await call(commands, "XDEL", self._dlq(queue_id), *ids))
        return removed

    async def purge_older_than(self, seconds: float, *, dry_run: bool = False) -> int:
        """Delete the dead letters that were dead-lettered more than `seconds` ago (by the Redis
        server's clock); return how many were (with `dry_run`: would be) deleted."""
        queues = list(await self._queue_ids())
        if not dry_run:
            return await trim_dead_letters(self.ctx, self.topic, queues, [self.group], seconds)
        cutoff = await _cutoff(self.ctx, seconds)
        total = 0
        for queue_id in queues:
            start = "-"
            while True:
                rows = await call(self.ctx.conn.commands, "XRANGE", self._dlq(queue_id), start,
                                  f"({cutoff}-0", "COUNT", _PAGE)  # fmt: skip
                total += len(rows)
                if len(rows) < _PAGE:
                    break
                start = "(" + rows[-1][0].decode()
        return total

    async def everything(self) -> list[DeadLetter]:
        """Every dead letter of the group on the topic (queue by queue, oldest first)."""
        out: list[DeadLetter] = []
        for queue_id in await self._queue_ids():
            out.extend([letter async for letter in self._scan(queue_id)])
        return out

    async def _scan(self, queue_id: int) -> Any:
        start = "-"
        while True:
            rows = await call(
                self.ctx.conn.commands, "XRANGE", self._dlq(queue_id), start, "+", "COUNT", _PAGE
            )
            for raw_id, fields in rows:
                yield DeadLetter.parse(self.topic, self.group, queue_id, raw_id.decode(), fields)
            if len(rows) < _PAGE:
                return
            start = "(" + rows[-1][0].decode()


async def trim_dead_letters(
    ctx: Context, topic: str, queue_ids: Sequence[int], groups: Sequence[str], seconds: float
) -> int:
    """Delete the dead letters of `groups` on these queues of `topic` that are older than
    `seconds` (one exact `XTRIM MINID` per stream, pipelined); return how many were deleted."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ConfigError(f"the age must be a finite number of seconds >= 0, got {seconds!r}")
    if not queue_ids or not groups:
        return 0
    cutoff = await _cutoff(ctx, seconds)
    commands = [
        ("XTRIM", ctx.keys.queue(topic, q).dlq(g), "MINID", f"{cutoff}-0")
        for q in queue_ids
        for g in groups
    ]
    removed = 0
    for reply in await ctx.conn.scripts.pipeline(ctx.conn.commands, commands):
        if isinstance(reply, BaseException):
            raise broker_error(reply, f"trimming the dead letters of {topic}")
        removed += int(reply)
    return removed


async def _cutoff(ctx: Context, seconds: float) -> int:
    """The entry-id time (ms) below which a dead letter is older than `seconds`."""
    return max(0, await server_ms(ctx.conn.commands) - round(seconds * 1000))


def _chunks(items: Sequence[DeadLetter], size: int) -> Iterable[Sequence[DeadLetter]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
