"""Pull consumer with RocketMQ 5 SimpleConsumer semantics: receive, ack, change invisible time.

A received message stays invisible to the group for `invisible` seconds; if it is not acknowledged
in time it is delivered again (to this or another pull consumer of the group) with its delivery
count raised. The invisible-until times live in a sorted set beside each queue, so a crashed
consumer's messages come back when their time runs out.

A message received `max_deliveries` times without being acknowledged is not returned again: it
is dead-lettered (reason "max_deliveries"), as RocketMQ moves a message past its group's maximum
delivery attempts to the dead-letter queue.

A group should be consumed either by push workers or by pull consumers, not both: push workers
claim any entry idle longer than their visibility timeout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import TracebackType
from typing import TypeVar

import anyio

from ..calls import Received
from ..connection import is_nogroup
from ..context import Context
from ..dlq import DeadLetterInfo, describe_error
from ..errors import ConfigError, ConsumerError, DecodeError
from ..filters import compile_filter
from ..health import Liveness, drop_empty_consumers
from ..message import Message
from ..names import validate_group, validate_topic
from ..streams import call
from ..topics import TopicInfo
from ..tracing import hooks as tracing
from .inbound import Positions, dead_letter, declare_group, to_message
from .spec import StartPosition, start_argument

__all__ = ["PullConsumer"]

T = TypeVar("T")


class PullConsumer:
    """Use as `async with app.pull_consumer(topic, group) as pc:`."""

    def __init__(
        self,
        ctx: Context,
        topic: str,
        group: str,
        name: str,
        *,
        start: StartPosition = "last",
        tag: str | None = None,
        sql: str | None = None,
        max_deliveries: int = 16,
        positions: Positions | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int):
            raise ConfigError(f"max_deliveries must be an int >= 1, got {max_deliveries!r}")
        if max_deliveries < 1:
            raise ConfigError(f"max_deliveries must be >= 1, got {max_deliveries!r}")
        self.ctx = ctx
        self.topic = validate_topic(topic)
        self.group = validate_group(group)
        self.name = name
        self.start = start
        start_argument(start)
        self.filter = compile_filter(tag, sql)
        self.max_deliveries = max_deliveries
        self.filtered = 0
        self.dead_lettered = 0
        self._info: TopicInfo | None = None
        self._next_queue = 0
        self._positions = positions if positions is not None else Positions()
        self._liveness = liveness

    async def __aenter__(self) -> PullConsumer:
        # A group this app consumed before and that is gone now (Redis restarted empty) is
        # re-created from where it was, not at `start`.
        again = self._positions or None
        self._info = await self.ctx.conn.retry(
            lambda: declare_group(self.ctx, self.topic, self.group, self.start, again=again),
            deadline=time.monotonic() + self.ctx.settings.startup_timeout,
        )
        if self._liveness is not None:
            await self._liveness.join(self.ctx)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        info, self._info = self._info, None
        if info is None:
            return
        mine = [(self.ctx.calls.queue(self.topic, q).stream, self.group, self.name)
                for q in range(info.queues)]  # fmt: skip
        with anyio.move_on_after(self.ctx.settings.socket_timeout, shield=True):
            await drop_empty_consumers(self.ctx, mine)
            if self._liveness is not None:
                await self._liveness.leave()

    @property
    def info(self) -> TopicInfo:
        if self._info is None:
            raise ConsumerError("use the pull consumer inside `async with app.pull_consumer(...)`")
        return self._info

    async def receive(
        self, max_messages: int = 32, invisible: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        """Receive up to `max_messages`, hidden from the group for `invisible` seconds.

        With `wait` > 0, blocks up to that long when nothing is available (long polling).
        """
        if (
            isinstance(max_messages, bool)
            or not isinstance(max_messages, int)
            or not (1 <= max_messages <= 1000)
        ):
            raise ConfigError(f"max_messages must be an int 1..1000, got {max_messages!r}")
        if not _seconds(invisible) or invisible <= 0 or not _seconds(wait) or wait < 0:
            raise ConfigError(
                f"invisible must be seconds > 0 and wait seconds >= 0, got {invisible!r}, {wait!r}"
            )
        deadline = time.monotonic() + wait
        while True:
            messages, last_ids = await self._retrying(
                partial(self._receive_once, max_messages, int(invisible * 1000)), "receive"
            )
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                if messages and tracing.on_receive is not None:  # rmq.tracing: a receive span
                    tracing.on_receive(self, messages)
                return messages
            await self._retrying(partial(self._wait_for_new, last_ids, remaining), "receive")

    async def ack(self, *messages: Message) -> int:
        """Acknowledge messages; returns how many were still pending."""
        calls = self.ctx.calls
        by_queue: dict[int, list[str]] = {}
        for msg in messages:
            by_queue.setdefault(msg.queue_id, []).append(msg.offset)
        acks = [calls.pull_ack(self.topic, q, self.group, ids) for q, ids in by_queue.items()]
        return sum(await self._retrying(partial(calls.results, acks), "ack"))

    async def change_invisible_duration(self, message: Message, invisible: float) -> bool:
        """Hide `message` for `invisible` more seconds from now.

        Returns False when it is no longer this consumer's (acknowledged, or its time ran out and
        another consumer received it).
        """
        if not _seconds(invisible) or invisible < 0:
            raise ConfigError(f"invisible must be seconds >= 0, got {invisible!r}")
        calls = self.ctx.calls
        call = calls.pull_change_invisible(
            self.topic, message.queue_id, self.group, self.name, message.offset,
            int(invisible * 1000),
        )  # fmt: skip
        return await self._retrying(partial(calls.run, call), "change_invisible_duration")

    async def nack(self, message: Message, delay: float = 0.0) -> bool:
        """Give `message` back: delivered again after `delay` seconds."""
        return await self.change_invisible_duration(message, delay)

    # ------------------------------------------------------------------ internals

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """Retry transient Redis errors for up to `send_timeout`; wrap the rest in rmq errors."""
        deadline = time.monotonic() + self.ctx.settings.send_timeout
        return await self.ctx.conn.retry(operation, deadline=deadline, what=what)

    async def _receive_once(
        self, max_messages: int, invisible_ms: int
    ) -> tuple[list[Message], dict[str, str]]:
        queues = self.info.queues
        order = [(self._next_queue + i) % queues for i in range(queues)]
        self._next_queue = (self._next_queue + 1) % queues
        share = math.ceil(max_messages / queues)
        messages: list[Message] = []
        last_ids: dict[str, str] = {}
        asks: list[tuple[int, int]] = []
        left = max_messages
        for queue_id in order:  # never ask for more than max_messages in all
            if left <= 0:
                break
            asks.append((queue_id, min(share, left)))
            left -= asks[-1][1]
        full: list[int] = []
        replies = await self._call_receive(asks, invisible_ms)
        for (queue_id, asked), reply in zip(asks, replies, strict=True):
            got = await self._collect(queue_id, reply, messages, last_ids)
            if got >= asked:
                full.append(queue_id)
        for queue_id in full + order[len(asks) :]:
            missing = max_messages - len(messages)
            if missing <= 0:
                break
            (reply,) = await self._call_receive([(queue_id, missing)], invisible_ms)
            await self._collect(queue_id, reply, messages, last_ids)
        if self.filter.match_all:
            return messages, last_ids
        selected = [m for m in messages if self.filter.matches(m.tag, m.properties)]
        if len(selected) < len(messages):
            skipped = [m for m in messages if not self.filter.matches(m.tag, m.properties)]
            self.filtered += len(skipped)
            await self.ack(*skipped)
        return selected, last_ids

    async def _call_receive(
        self, asks: Sequence[tuple[int, int]], invisible_ms: int
    ) -> list[Received]:
        calls = self.ctx.calls
        receives = [
            calls.pull_receive(self.topic, q, self.group, self.name, count, invisible_ms)
            for q, count in asks
        ]
        replies = await calls.run_all(receives)
        if any(isinstance(r, BaseException) and is_nogroup(r) for r in replies):
            # the group vanished (Redis restarted empty): re-create it from where it was
            await declare_group(self.ctx, self.topic, self.group, self.start,
                                again=self._positions)  # fmt: skip
            replies = await calls.run_all(receives)
        return [c.result(r) for c, r in zip(receives, replies, strict=True)]

    async def _collect(
        self, queue_id: int, received: Received, out: list[Message], last_ids: dict[str, str]
    ) -> int:
        stream = self.ctx.calls.queue(self.topic, queue_id).stream
        last_ids[stream] = received.last_id
        if received.entries:
            self._positions.saw(stream, received.entries[-1][0])
        got = 0
        for entry_id, fields, deliveries in received.entries:
            got += 1
            info: DeadLetterInfo | None = None
            try:
                msg = to_message(
                    entry_id, fields, self.topic, queue_id, self.group, stream, deliveries,
                    self.ctx.settings.max_body_bytes,
                )  # fmt: skip
            except DecodeError as exc:
                info = DeadLetterInfo("undecodable", describe_error(exc), attempts=deliveries)
            else:
                if deliveries > self.max_deliveries:
                    error = (f"received {deliveries - 1} times and never acknowledged "
                             f"(max_deliveries {self.max_deliveries})")  # fmt: skip
                    info = DeadLetterInfo("max_deliveries", error, attempts=deliveries - 1)
            if info is not None:
                await dead_letter(
                    self.ctx, topic=self.topic, queue_id=queue_id, group=self.group,
                    entry_id=entry_id.decode(), info=info,
                )  # fmt: skip
                self.dead_lettered += 1
                continue
            msg.reconsume_times += deliveries - 1  # SimpleConsumer: a redelivery is a retry
            out.append(msg)
        return got

    async def _wait_for_new(self, last_ids: dict[str, str], seconds: float) -> None:
        """Block until an entry newer than `last_ids` arrives on any queue, or `seconds` pass."""
        block_ms = max(1, int(min(seconds, self.ctx.settings.block_seconds) * 1000))
        conn = self.ctx.conn
        units = conn.read_units(list(last_ids))
        if len(units) == 1:
            await call(conn.readers, "XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", *units[0],
                       *[last_ids[s] for s in units[0]])  # fmt: skip
            return

        async def wait(unit: list[str]) -> None:  # a cluster: one blocking read per queue
            wire = conn.wire_for(unit[0])
            try:
                await wire.call("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", *unit,
                                *[last_ids[s] for s in unit])  # fmt: skip
            finally:
                await wire.close()

        tasks = [asyncio.ensure_future(wait(unit)) for unit in units]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _seconds(value: object) -> bool:
    """A finite number of seconds (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
