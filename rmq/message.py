"""The message a handler receives (and a batch sender builds), and the result of a send."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .ids import born_ms, entry_ms

__all__ = ["Message", "SendResult", "SendStatus"]


def _to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class Message:
    """A message: what you send in a batch and what a consumer hands to your handler.

    Build one with `Message(body=..., tag=..., keys=[...], properties={...})`. On a received
    message rmq also fills in `topic`, `queue_id`, `offset` (the stream entry id), `msg_id`,
    `born_at`, `stored_at`, `reconsume_times`, `delivery_count` and `group`.

    `reconsume_times` is how many times the message was consumed before and failed (0 on the first
    attempt, 1 on the first retry, ...; for pull consumers, redeliveries after the invisible time
    count too). `delivery_count` is how often Redis delivered this entry (crash redeliveries).
    """

    __slots__ = (
        "_born_ms",
        "_first_failure_ms",
        "_origin",
        "_stored_ms",
        "_stream",
        "body",
        "delivery_count",
        "group",
        "keys",
        "msg_id",
        "offset",
        "properties",
        "queue_id",
        "reconsume_times",
        "tag",
        "topic",
    )

    body: Any
    tag: str | None
    keys: list[str]
    properties: dict[str, str]
    msg_id: str
    topic: str
    queue_id: int
    offset: str
    reconsume_times: int
    delivery_count: int
    group: str | None
    _born_ms: int | None
    _stored_ms: int | None
    _stream: str
    _origin: str | None
    _first_failure_ms: int | None

    def __init__(
        self,
        body: Any = None,
        *,
        tag: str | None = None,
        keys: list[str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.tag = tag
        self.keys = list(keys) if keys else []
        self.properties = dict(properties) if properties else {}
        self.msg_id = ""
        self.topic = ""
        self.queue_id = -1
        self.offset = ""
        self.reconsume_times = 0
        self.delivery_count = 0
        self.group = None
        self._born_ms = None
        self._stored_ms = None
        self._stream = ""
        self._origin = None
        self._first_failure_ms = None

    @classmethod
    def _received(
        cls,
        body: Any,
        tag: str | None,
        keys: list[str],
        properties: dict[str, str],
        msg_id: str,
        topic: str,
        queue_id: int,
        offset: str,
        group: str | None,
        stream: str,
        delivery_count: int,
        retries: int = 0,
        origin: str | None = None,
        first_failure_ms: int | None = None,
    ) -> Message:
        """A received message (positional for speed: this runs once per message)."""
        msg = object.__new__(cls)
        msg.body = body
        msg.tag = tag
        msg.keys = keys
        msg.properties = properties
        msg.msg_id = msg_id
        msg.topic = topic
        msg.queue_id = queue_id
        msg.offset = offset
        msg.group = group
        msg._stream = stream
        msg._born_ms = None
        msg._stored_ms = None
        msg._origin = origin
        msg._first_failure_ms = first_failure_ms
        msg.reconsume_times = retries
        msg.delivery_count = delivery_count
        return msg

    @property
    def born_at(self) -> datetime | None:
        """When the producer created the message (UTC); for foreign entries, `stored_at`."""
        if self._born_ms is None and self.msg_id:
            self._born_ms = born_ms(self.msg_id)
        return _to_datetime(self._born_ms) or self.stored_at

    @property
    def stored_at(self) -> datetime | None:
        """When the message became visible in its queue (UTC): the stream entry's time."""
        if self._stored_ms is None and self.offset:
            self._stored_ms = entry_ms(self.offset)
        return _to_datetime(self._stored_ms)

    def __repr__(self) -> str:
        where = f" {self.topic}[{self.queue_id}]@{self.offset}" if self.offset else ""
        tag = f" tag={self.tag!r}" if self.tag else ""
        return f"<Message{where} msg_id={self.msg_id or '-'}{tag}>"


class SendStatus(enum.StrEnum):
    """Outcome of a successful send (RocketMQ's SendStatus)."""

    SEND_OK = "SEND_OK"


@dataclass(frozen=True, slots=True)
class SendResult:
    """Where a sent message was stored: `offset` is its stream entry id in queue `queue_id`.

    A delayed message is not in its queue yet: `offset` is "" and `deliver_at` says when it will be.
    """

    status: SendStatus
    msg_id: str
    topic: str
    queue_id: int
    offset: str
    deliver_at: datetime | None = None
