"""Reading stored messages without consuming them: by offset, by msg_id, by key, ranges and tails.

What `rmq message show|print|query` and `rmq consume` without a group run (through `rmq.admin`).
Every command names the keys of one queue; searches walk a stream server-side, `chunk` entries
per `find_entries` script call, so Redis is never blocked for long. There is no key index.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio

from .codec import decode_fields
from .context import Context
from .errors import ConfigError, DecodeError
from .ids import born_ms, entry_key, entry_ms
from .keys import QueueKeys
from .streams import call
from .topics import TopicInfo

__all__ = [
    "Bound",
    "StoredMessage",
    "entry_id",
    "is_msg_id",
    "find_message",
    "message_at",
    "messages",
    "query_key",
    "tail",
]

Bound = str | datetime | None
"""A range bound: a stream entry id, a time, or None (open)."""

_MAX_SEQ = "18446744073709551615"
_MAX_U64 = 2**64 - 1
_ENTRY_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")


def entry_id(value: str) -> str:
    """`value` (stripped) if it is a stream entry id `<ms>-<seq>` (or `<ms>`) within 64 bits;
    raises `ConfigError` otherwise, before Redis sees it."""
    text = value.strip() if isinstance(value, str) else ""
    match = _ENTRY_ID.match(text)
    if match is None or any(int(p) > _MAX_U64 for p in match.groups() if p is not None):
        raise ConfigError(f"{value!r} is not an offset: an entry id is <ms>-<seq>, like "
                          "1714550400000-0")  # fmt: skip
    return text


def is_msg_id(value: str) -> bool:
    """Whether `value` is an rmq msg_id (32 hex digits with a birth time)."""
    return born_ms(value) is not None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored in its queue; undecodable entries have `error` and their raw fields."""

    topic: str
    queue_id: int
    offset: str
    msg_id: str
    tag: str | None = None
    keys: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: str | None = None
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def stored_at(self) -> datetime:
        return datetime.fromtimestamp(entry_ms(self.offset) / 1000, UTC)

    @property
    def born_at(self) -> datetime:
        ms = born_ms(self.msg_id)
        return self.stored_at if ms is None else datetime.fromtimestamp(ms / 1000, UTC)

    @property
    def body_type(self) -> str:
        """How the body was sent: "bytes", "str" or "json"."""
        if isinstance(self.body, bytes):
            return "bytes"
        return "str" if isinstance(self.body, str) else "json"

    @classmethod
    def decode(cls, topic: str, queue_id: int, entry_id: bytes | str, fields: Any) -> StoredMessage:
        """From a stream entry (fields as a flat list or a dict); never raises."""
        offset = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        if isinstance(fields, dict):
            flat: list[bytes] = [x for pair in fields.items() for x in pair]
        else:
            flat = list(fields or [])
        try:
            d = decode_fields(offset, flat)
        except DecodeError as exc:
            raw = {
                k.decode(errors="backslashreplace"): _printable(v)
                for k, v in zip(flat[::2], flat[1::2], strict=False)
            }
            return cls(topic, queue_id, offset, offset, error=exc.reason, raw=raw)
        return cls(topic, queue_id, offset, d.msg_id, d.tag, d.keys, d.properties, d.body)


def _printable(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def bound(value: Bound, default: str) -> str:
    """A range bound as XRANGE takes it ("<ms>" is <ms>-0 as a start, <ms>-max as an end)."""
    if value is None:
        return default
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(max(0, int(moment.timestamp() * 1000)))
    if value in ("-", "+"):
        return value
    return entry_id(value)


def _before(entry_id: str) -> str:
    """The id just before `entry_id` (XREAD returns entries after the id it is given)."""
    ms, seq = entry_key(entry_id)
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_SEQ}" if ms else "0-0"


async def message_at(
    ctx: Context, info: TopicInfo, queue_id: int, offset: str
) -> StoredMessage | None:
    """The message stored at `offset` (its entry id) in queue `queue_id`, or None."""
    stream = ctx.keys.queue(info.name, queue_id).stream
    offset = entry_id(offset)
    rows = await call(ctx.conn.commands, "XRANGE", stream, offset, offset)
    if not rows:
        return None
    found_id, fields = rows[0]
    return StoredMessage.decode(info.name, queue_id, found_id, fields)


async def find_message(
    ctx: Context, info: TopicInfo, msg_id: str, *, window: float, chunk: int
) -> StoredMessage | None:
    """A message by msg_id: an rmq msg_id carries its birth time, so only the entries stored
    within `window` seconds of it are read; an entry id is looked up in every queue."""
    born = born_ms(msg_id)
    if born is None:
        entry_id(msg_id)  # neither an rmq msg_id nor an entry id: ConfigError
        for q in range(info.queues):
            found = await message_at(ctx, info, q, msg_id)
            if found is not None:
                return found
        return None
    span = int(window * 1000)
    start, end = str(max(0, born - span)), str(born + span)
    for q in range(info.queues):
        queue = ctx.keys.queue(info.name, q)
        async for found in _find(ctx, queue, start, end, "i", msg_id, chunk):
            return found
    return None


async def query_key(
    ctx: Context, info: TopicInfo, key: str, *, start: Bound, end: Bound, limit: int, chunk: int
) -> list[StoredMessage]:
    """Up to `limit` messages with `key` among their keys, oldest first (one script call per
    `chunk` entries of each queue's stream in the range)."""
    lo, hi = bound(start, "-"), bound(end, "+")
    found: list[StoredMessage] = []
    for q in range(info.queues):
        async for msg in _find(ctx, ctx.keys.queue(info.name, q), lo, hi, "k", key, chunk):
            found.append(msg)
            if len(found) >= limit:
                break
    found.sort(key=lambda m: entry_key(m.offset))
    return found[:limit]


async def _find(
    ctx: Context, queue: QueueKeys, start: str, end: str, kind: str, value: str, chunk: int
) -> AsyncIterator[StoredMessage]:
    calls = ctx.calls
    cursor = start
    while cursor:
        call = calls.find_entries(queue.topic, queue.queue_id, cursor, end, chunk, kind, value)
        cursor, found = await calls.run(call)
        for entry_id, fields in found:
            yield StoredMessage.decode(queue.topic, queue.queue_id, entry_id, fields)


async def messages(
    ctx: Context, info: TopicInfo, queues: range | list[int], *, start: Bound, end: Bound,
    count: int,
) -> list[StoredMessage]:  # fmt: skip
    """Up to `count` stored messages of `queues`, oldest first (one XRANGE per queue)."""
    lo, hi = bound(start, "-"), bound(end, "+")
    pipe = ctx.conn.commands.pipeline(transaction=False)
    for q in queues:
        pipe.execute_command("XRANGE", ctx.keys.queue(info.name, q).stream, lo, hi, "COUNT", count)
    out: list[StoredMessage] = []
    for q, rows in zip(queues, await pipe.execute(), strict=True):
        out.extend(
            StoredMessage.decode(info.name, q, entry_id, fields) for entry_id, fields in rows
        )
    out.sort(key=lambda m: entry_key(m.offset))
    return out[:count]


async def tail(
    ctx: Context, info: TopicInfo, *, start: Bound | Literal["first", "last"], poll: float
) -> AsyncGenerator[StoredMessage, None]:
    """The topic's messages as they are stored, from `start` ("last": only new ones). Each queue
    is read with its own non-blocking XREAD (pipelined), every `poll` seconds while idle."""
    client = ctx.conn.commands
    streams = [ctx.keys.queue(info.name, q).stream for q in range(info.queues)]
    if start == "last":
        pipe = client.pipeline(transaction=False)
        for stream in streams:
            pipe.execute_command("XREVRANGE", stream, "+", "-", "COUNT", 1)
        last = [rows[0][0].decode() if rows else "0-0" for rows in await pipe.execute()]
    elif start == "first" or start is None:
        last = ["0-0"] * len(streams)
    else:
        first = bound(start, "0")
        last = [_before(first if "-" in first else f"{first}-0")] * len(streams)
    while True:
        pipe = client.pipeline(transaction=False)
        for stream, after in zip(streams, last, strict=True):
            pipe.execute_command("XREAD", "COUNT", 100, "STREAMS", stream, after)
        batch: list[StoredMessage] = []
        for q, reply in enumerate(await pipe.execute()):
            for _name, rows in reply or ():
                batch.extend(StoredMessage.decode(info.name, q, i, f) for i, f in rows)
                if rows:
                    last[q] = rows[-1][0].decode()
        if not batch:
            await anyio.sleep(poll)
            continue
        batch.sort(key=lambda m: entry_key(m.offset))
        for msg in batch:
            yield msg
