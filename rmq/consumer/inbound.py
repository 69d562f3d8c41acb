"""Turning stream entries into `Message` objects, and setting undecodable ones aside."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from ..codec import DEFAULT_MAX_BODY, decode_fields, decode_own
from ..connection import broker_error
from ..context import Context
from ..dlq import DeadLetterInfo
from ..ids import born_ms, entry_key
from ..logging import fields
from ..message import Message
from ..topics import TopicInfo
from .spec import StartPosition, start_argument

__all__ = [
    "GroupDeclaration", "Positions", "dead_letter", "declare_group", "declare_groups", "to_message",
]  # fmt: skip

log = logging.getLogger("rmq.consumer")


_new_message = object.__new__


def to_message(
    entry_id: bytes,
    fields: list[bytes] | dict[bytes, bytes],
    topic: str,
    queue_id: int,
    group: str | None,
    stream: str,
    delivery_count: int = 1,
    limit: int = DEFAULT_MAX_BODY,
) -> Message:
    """Decode one entry (raw flat field list or dict); raises `DecodeError` with the raw fields.

    rmq's own entries take `codec.decode_own`'s fast path straight into a `Message`; anything
    else goes through `decode_fields`, which reports precisely what is wrong. A compressed body
    inflates to at most `limit` bytes (`max_body_bytes`).
    """
    offset = entry_id.decode()
    own = decode_own(fields, limit)
    if own is not None:
        msg = _new_message(Message)
        msg.msg_id, msg.tag, msg.keys, msg.properties, msg.body = own
        msg.topic = topic
        msg.queue_id = queue_id
        msg.offset = offset
        msg.group = group
        msg._stream = stream
        msg._born_ms = born_ms(msg.msg_id)
        msg._stored_ms = None
        msg._origin = None
        msg._first_failure_ms = None
        msg.reconsume_times = 0
        msg.delivery_count = delivery_count
        return msg
    d = decode_fields(offset, fields, limit)
    msg = Message._received(
        d.body, d.tag, d.keys, d.properties, d.msg_id, topic, queue_id, offset, group, stream,
        delivery_count, d.retries, d.origin, d.first_failure_ms,
    )  # fmt: skip
    msg._born_ms = born_ms(d.msg_id)
    return msg


async def dead_letter(
    ctx: Context, *, topic: str, queue_id: int, group: str, entry_id: str, info: DeadLetterInfo
) -> Any:
    """Acknowledge `entry_id` and append a copy to the group's dead-letter stream (one script).

    Returns the dead-letter entry id, or None when the entry was no longer pending.
    """
    stream = ctx.calls.queue(topic, queue_id).stream
    meta = info.fields(topic, queue_id, group, entry_id)
    call = ctx.calls.dead_letter(topic, queue_id, group, stream, entry_id, meta)
    result = await ctx.conn.retry(
        partial(ctx.calls.run, call),
        deadline=time.monotonic() + ctx.settings.socket_timeout,
        what="dead-letter",
    )
    if result:
        log.warning("dead-lettered (%s)", info.reason, extra=fields(
            topic=topic, group=group, queue=queue_id, offset=entry_id))  # fmt: skip
    return result


class Positions:
    """The last entry a consumer was handed on each stream, so that a group that vanished (Redis
    restarted empty, or the group was deleted) is re-created from there: entries sent while it
    was gone are delivered, not skipped as "last" would skip them."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def saw(self, stream: str, entry_id: bytes | str) -> None:
        key = entry_key(entry_id)
        if key > self._last.get(stream, (0, 0)):
            self._last[stream] = key

    def __bool__(self) -> bool:
        return bool(self._last)

    def start(self, stream: str) -> str:
        """The `declare_group` start that re-creates the group on `stream`."""
        last = self._last.get(stream)
        return f"after:{last[0]}-{last[1]}" if last else "first"


GroupDeclaration = tuple[str, str, StartPosition, bool, Positions | None]
"""(topic, group, start, with the group's retry streams, re-creating from these positions)."""
_CHUNK = 2000


async def declare_group(
    ctx: Context,
    topic: str,
    group: str,
    start: StartPosition,
    *,
    retry_streams: bool = False,
    again: Positions | None = None,
) -> TopicInfo:
    """Create the topic (unless strict) and `group` on each of its queues; existing groups stay.

    With `retry_streams`, also on the group's retry streams (from their first entry). `again`:
    the group is being re-created (it vanished): each queue from the last entry this consumer saw
    there, instead of `start`.
    """
    (info,) = await declare_groups(ctx, [(topic, group, start, retry_streams, again)])
    return info


async def declare_groups(ctx: Context, declarations: list[GroupDeclaration]) -> list[TopicInfo]:
    """`declare_group` for many groups, in a few round trips whatever their number: the topics
    are read (and created) together, then every group's declarations are pipelined."""
    infos = await ctx.topics.ensure_many([d[0] for d in declarations])
    calls = ctx.calls
    declares = []
    commands: list[tuple[Any, ...]] = []
    for topic, group, start, retry_streams, again in declarations:
        begin = start_argument(start)
        for q in range(infos[topic].queues):
            queue = calls.queue(topic, q)
            first = begin if again is None else again.start(queue.stream)
            declares.append(calls.declare_group(queue.stream, group, first))
            if retry_streams:
                declares.append(calls.declare_group(queue.retry_stream(group), group, "first"))
        commands.append(("SADD", ctx.keys.topic_groups(topic), group))
    commands = [*(c.command for c in declares), *commands]
    replies: list[Any] = []
    for start_at in range(0, len(commands), _CHUNK):
        replies += await ctx.conn.scripts.pipeline(
            ctx.conn.commands, commands[start_at : start_at + _CHUNK]
        )
    for call, reply in zip(declares, replies, strict=False):
        call.result(reply)
    for reply in replies[len(declares) :]:
        if isinstance(reply, BaseException):
            raise broker_error(reply, "subscribing groups to their topics")
    return [infos[d[0]] for d in declarations]
