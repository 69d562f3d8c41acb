"""Turning stream entries into `Message` objects, and setting undecodable ones aside."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..codec import decode_fields
from ..connection import broker_error
from ..context import Context
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
        delivery_count,
    )  # fmt: skip


async def dead_letter(
    ctx: Context,
    *,
    topic: str,
    queue_id: int,
    group: str,
    entry_id: str,
    reason: str,
    error: BaseException | None = None,
    attempts: int = 1,
) -> Any:
    """Acknowledge `entry_id` and append a copy to the group's dead-letter stream (one script).

    Returns the dead-letter entry id, or None when the entry was no longer pending.
    """
    queue = ctx.keys.queue(topic, queue_id)
    now = str(int(time.time() * 1000))
    meta: list[str] = [
        "reason", reason,
        "error", _describe(error),
        "attempts", str(attempts),
        "first_failure_ms", now,
        "last_failure_ms", now,
        "topic", topic,
        "queue", str(queue_id),
        "offset", entry_id,
        "group", group,
    ]  # fmt: skip
    result = await ctx.conn.retry(
        lambda: ctx.conn.scripts.call(
            ctx.conn.commands,
            "dead_letter",
            (queue.stream, queue.dlq(group)),
            (group, entry_id, *meta),
        ),
        deadline=time.monotonic() + ctx.settings.socket_timeout,
        what="dead-letter",
    )
    if result:
        log.warning(
            "dead-lettered %s[%d]@%s for group %s: %s", topic, queue_id, entry_id, group, reason
        )
    return result


def _describe(error: BaseException | None, limit: int = 1000) -> str:
    if error is None:
        return ""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def declare_group(ctx: Context, topic: str, group: str, start: StartPosition) -> TopicInfo:
    """Create the topic (unless strict) and `group` on each of its queues; existing groups stay."""
    info = await ctx.topics.ensure(topic)
    begin = start_argument(start)
    conn = ctx.conn
    commands = [
        conn.scripts["declare_group"].evalsha_args(
            (ctx.keys.queue(topic, q).stream,), (group, begin)
        )
        for q in range(info.queues)
    ]
    commands.append(("SADD", ctx.keys.topic_groups(topic), group))
    for result in await conn.scripts.pipeline(conn.commands, commands):
        if isinstance(result, BaseException):
            raise broker_error(result, f"declaring group {group!r} on {topic!r}")
    return info
