"""The way out, shared by every sender (producer, transactions, admin): the outgoing-message
record, its checks and encoding, the choice of its queue, and when it becomes visible.

`send(...)`, `send_async(...)`, `tx.send(...)` and the rest keep their keyword signatures, and
their first line builds one `Outgoing`; only that record travels further down.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .codec import encode_body, encode_properties
from .errors import ConfigError
from .ids import new_msg_id
from .message import Message
from .names import validate_keys, validate_properties, validate_tag
from .retry import delay_level_seconds, seconds
from .settings import Settings
from .topics import TopicInfo
from .tracing import hooks as tracing

__all__ = ["Encoded", "Outgoing", "QueueChooser", "QueueSelector", "When", "encode"]

QueueSelector = Callable[[int, Message], int]
"""`selector(queue_count, message) -> queue_id`, RocketMQ's MessageQueueSelector."""
When = tuple[str, int]
"""("after", delay ms) or ("at", due epoch ms): when a delayed message becomes visible."""


@dataclass(slots=True)
class Outgoing:
    """One message on its way out, with every option of `send` (nothing checked yet)."""

    topic: str
    body: Any
    tag: str | None = None
    keys: Sequence[str] | None = None
    properties: dict[str, str] | None = None
    sharding_key: str | None = None
    selector: QueueSelector | None = None
    delay: float | timedelta | None = None
    deliver_at: datetime | None = None
    delay_level: int | None = None

    @classmethod
    def of(cls, topic: str, message: Message | Any) -> Outgoing:
        """A batch item: a `Message` (body, tag, keys, properties), or a bare body."""
        if isinstance(message, Message):
            return cls(topic, message.body, message.tag, message.keys, message.properties)
        return cls(topic, message)

    def message(self) -> Message:
        """The message as a selector or a local transaction sees it."""
        return Message(self.body, tag=self.tag, keys=list(self.keys or []),
                       properties=self.properties)  # fmt: skip


@dataclass(slots=True)
class Encoded:
    """An outgoing message checked and encoded for a script: the 6 stored values (msg_id, tag,
    keys, properties, flags, body) and when it becomes visible (None: at once)."""

    values: list[Any]
    when: When | None

    @property
    def msg_id(self) -> str:
        return str(self.values[0])

    @property
    def size(self) -> int:
        """Bytes of the stored body."""
        return len(self.values[5])


def encode(settings: Settings, out: Outgoing) -> Encoded:
    """Check and encode `out`; raises `ConfigError` (`InvalidName`), `EncodeError` or
    `MessageTooLarge`, and nothing has been written."""
    data, flags = encode_body(out.body, settings.max_body_bytes, settings.compress_threshold)
    tag = out.tag
    if tag is not None:
        validate_tag(tag)
    keys = " ".join(validate_keys(out.keys)) if out.keys else ""
    properties = out.properties
    if properties:
        validate_properties(properties)
    when = None
    if out.delay is not None or out.deliver_at is not None or out.delay_level is not None:
        when = _when(settings, out)
    msg_id = new_msg_id()
    if tracing.on_send is not None:  # rmq.tracing: a PRODUCER span, its context in properties
        properties = tracing.on_send(out, msg_id, properties)
    props = encode_properties(properties, settings.max_properties_bytes)
    return Encoded([msg_id, tag or "", keys, props, flags, data], when)


def _when(settings: Settings, out: Outgoing) -> When:
    """Check the delay options (at most one) against `max_delay`."""
    given = [x is not None for x in (out.delay, out.deliver_at, out.delay_level)]
    if sum(given) > 1:
        raise ConfigError("give at most one of delay, deliver_at and delay_level")
    limit = settings.max_delay
    if out.deliver_at is None:
        if out.delay is not None:
            wait = seconds(out.delay, "delay")
        else:
            assert out.delay_level is not None
            wait = delay_level_seconds(out.delay_level)
        if wait > limit:
            raise ConfigError(f"delay {wait:g}s is beyond max_delay ({limit:g}s)")
        return ("after", int(wait * 1000))
    deliver_at = out.deliver_at
    if not isinstance(deliver_at, datetime):
        raise ConfigError(f"deliver_at must be a datetime, got {type(deliver_at).__name__}")
    moment = deliver_at if deliver_at.tzinfo else deliver_at.astimezone()
    due = moment.timestamp()
    if due - time.time() > limit:
        raise ConfigError(f"deliver_at {moment.isoformat()} is beyond max_delay ({limit:g}s)")
    return ("at", math.ceil(due * 1000))


class QueueChooser:
    """Chooses each message's queue: by `sharding_key` (a stable hash, so one key keeps one
    queue and its order), by the caller's `selector`, else round robin per topic from a random
    start (as RocketMQ's producers do)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def choose(self, info: TopicInfo, out: Outgoing) -> int:
        if out.sharding_key is not None:
            if not isinstance(out.sharding_key, str) or not out.sharding_key:
                raise ConfigError("sharding_key must be a non-empty str")
            return zlib.crc32(out.sharding_key.encode()) % info.queues
        if out.selector is not None:
            if not callable(out.selector):
                raise ConfigError(f"selector must be callable, got {out.selector!r}")
            queue_id = out.selector(info.queues, out.message())
            if not isinstance(queue_id, int) or not 0 <= queue_id < info.queues:
                last = info.queues - 1
                raise ConfigError(
                    f"selector returned {queue_id!r}; topic {info.name!r} has queues 0..{last}"
                )
            return queue_id
        n = self._next.get(info.name)
        if n is None:
            n = random.randrange(info.queues)
        self._next[info.name] = n + 1
        return n % info.queues
