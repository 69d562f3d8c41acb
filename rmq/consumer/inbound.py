"""Turning stream entries into `Message` objects, and setting undecodable ones aside."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from ..codec import decode_fields
from ..connection import broker_error
from ..context import Context
from ..dlq import DeadLetterInfo
from ..message import Message
from ..topics import TopicInfo
from .spec import StartPosition, start_argument

__all__ = ["dead_letter", "declare_group", "to_message"]

log = logging.getLogger("rmq.consumer")


def to_message(
    entry_id: bytes,
    fields: list[bytes] | dict[bytes, bytes],
    topic: str,
    queue_id: int,
    group: str | None,
    stream: str,
    delivery_count: int = 1,
) -> Message:
    """Decode one entry (raw flat field list or dict); raises `DecodeError` with the raw fields."""
    offset = entry_id.decode()
    d = decode_fields(offset, fields)
    return Message._received(
        d.body, d.tag, d.keys, d.properties, d.msg_id, topic, queue_id, offset, group, stream,
        delivery_count, d.retries, d.origin, d.first_failure_ms,
    )  # fmt: skip


async def dead_letter(
    ctx: Context, *, topic: str, queue_id: int, group: str, entry_id: str, info: DeadLetterInfo
) -> Any:
    """Acknowledge `entry_id` and append a copy to the group's dead-letter stream (one script).

    Returns the dead-letter entry id, or None when the entry was no longer pending.
    """
    queue = ctx.keys.queue(topic, queue_id)
    meta = info.fields(topic, queue_id, group, entry_id)
    keys, args = (queue.stream, queue.dlq(group)), (group, entry_id, *meta)
    result = await ctx.conn.retry(
        partial(ctx.conn.scripts.call, ctx.conn.commands, "dead_letter", keys, args),
        deadline=time.monotonic() + ctx.settings.socket_timeout,
        what="dead-letter",
    )
    if result:
        log.warning(
            "dead-lettered %s[%d]@%s (%s): %s", topic, queue_id, entry_id, group, info.reason
        )
    return result


async def declare_group(
    ctx: Context, topic: str, group: str, start: StartPosition, *, retry_streams: bool = False
) -> TopicInfo:
    """Create the topic (unless strict) and `group` on each of its queues; existing groups stay.

    With `retry_streams`, also on the group's retry streams (from their first entry).
    """
    info = await ctx.topics.ensure(topic)
    begin = start_argument(start)
    conn = ctx.conn
    script = conn.scripts["declare_group"]
    commands = []
    for q in range(info.queues):
        queue = ctx.keys.queue(topic, q)
        commands.append(script.evalsha_args((queue.stream,), (group, begin)))
        if retry_streams:
            commands.append(script.evalsha_args((queue.retry_stream(group),), (group, "first")))
    commands.append(("SADD", ctx.keys.topic_groups(topic), group))
    for result in await conn.scripts.pipeline(conn.commands, commands):
        if isinstance(result, BaseException):
            raise broker_error(result, f"declaring group {group!r} on {topic!r}")
    return info
