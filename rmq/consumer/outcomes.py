"""What happened to delivered entries, written to Redis in one round trip per flush.

Handlers finish at their own pace; their outcomes queue up in each consumer's `Outcomes`, and one
`OutcomeWriter` per app writes the outcomes of every consumer together: one XACK per stream for
the successes, one `retry` script call per stream for the failures to try again, one
`dead_letter` call per message that gives up. Every write is idempotent (an entry that is no
longer pending is left alone), so a flush interrupted by a lost connection is simply repeated, and
a flush interrupted by shutdown keeps its outcomes for the final, shielded flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..calls import Call
from ..context import Context
from ..dlq import DeadLetterInfo
from ..logging import fields
from ..router import WireSet
from .handling import Handling

__all__ = ["OutcomeWriter", "Outcomes"]

log = logging.getLogger("rmq.consumer")

Settled = Callable[[str, Iterable[str]], None]
"""Called with (stream, entry ids) once their outcome is written."""


@dataclass(slots=True)
class _Pending:
    acks: dict[str, list[str]] = field(default_factory=dict)
    retries: dict[tuple[str, int], list[tuple[str, int]]] = field(default_factory=dict)
    dead: list[tuple[str, int, str, DeadLetterInfo]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.acks or self.retries or self.dead)

    def merge(self, other: _Pending) -> None:
        for stream, ids in other.acks.items():
            self.acks.setdefault(stream, []).extend(ids)
        for key, items in other.retries.items():
            self.retries.setdefault(key, []).extend(items)
        self.dead.extend(other.dead)


class OutcomeWriter:
    """Writes the recorded outcomes of many consumers, in one round trip per flush."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._dirty: dict[Outcomes, None] = {}
        self._wakeup = asyncio.Event()
        self._wire: WireSet | None = None

    def mark(self, outcomes: Outcomes) -> None:
        """`outcomes` has something to write."""
        self._dirty[outcomes] = None
        self._wakeup.set()

    async def run(self) -> None:
        """Write outcomes as they come (cancel to stop; then call `flush` once more)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything recorded so far (retrying transient errors without end)."""
        if self._wire is None:
            self._wire = self.ctx.conn.wires()
        wire = self._wire
        timeout = self.ctx.settings.socket_timeout
        while self._dirty:
            taken = [(o, o.take()) for o in self._dirty]
            self._dirty = {}
            commands: list[tuple[Any, ...]] = []
            readers: list[Callable[[Any], None]] = []
            for outcomes, batch in taken:
                outcomes.commands(batch, commands, readers)
            try:
                results = await self.ctx.conn.retry(
                    partial(wire.execute, commands, timeout), what="writing outcomes"
                )
            except BaseException:
                # Cancelled (shutdown) or failed: keep them for the next (shielded) flush.
                for outcomes, batch in taken:
                    outcomes.put_back(batch)
                raise
            for read, result in zip(readers, results, strict=True):
                read(result)

    async def close(self) -> None:
        if self._wire is not None:
            await self._wire.close()
            self._wire = None


class Outcomes:
    """Buffers acks, retries and dead letters of one consumer for the app's `OutcomeWriter`."""

    def __init__(
        self, ctx: Context, topic: str, group: str, consumer: str, settled: Settled,
        handling: Handling, writer: OutcomeWriter | None = None,
    ) -> None:  # fmt: skip
        self.ctx = ctx
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self.handling = handling
        self.writer = writer or OutcomeWriter(ctx)
        self._settled = settled
        self._pending = _Pending()

    def __hash__(self) -> int:
        return id(self)

    # ------------------------------------------------------------------ recording

    def ack(self, stream: str, offset: str) -> None:
        acks = self._pending.acks.get(stream)
        if acks is None:
            self._pending.acks[stream] = [offset]
        else:
            acks.append(offset)
        self.writer.mark(self)

    def ack_many(self, stream: str, offsets: list[str]) -> None:
        self._pending.acks.setdefault(stream, []).extend(offsets)
        self.writer.mark(self)

    def retry(self, stream: str, queue_id: int, offset: str, delay_ms: int) -> None:
        self._pending.retries.setdefault((stream, queue_id), []).append((offset, delay_ms))
        self.writer.mark(self)

    def dead_letter(self, stream: str, queue_id: int, offset: str, info: DeadLetterInfo) -> None:
        self._pending.dead.append((stream, queue_id, offset, info))
        self.writer.mark(self)

    def take(self) -> _Pending:
        """What was recorded since the last call."""
        batch, self._pending = self._pending, _Pending()
        return batch

    def put_back(self, batch: _Pending) -> None:
        """A batch that could not be written: written with the next flush."""
        batch.merge(self._pending)
        self._pending = batch
        if batch:
            self.writer.mark(self)

    async def flush(self) -> None:
        """Write what is recorded (through the writer, with every other consumer's)."""
        if self._pending:
            self.writer.mark(self)
        await self.writer.flush()

    def commands(
        self,
        batch: _Pending,
        commands: list[tuple[Any, ...]],
        readers: list[Callable[[Any], None]],
    ) -> None:
        """Append the writes of `batch` to `commands`, and how to read each reply to `readers`."""
        calls, topic, group = self.ctx.calls, self.topic, self.group
        for stream, ids in batch.acks.items():
            commands.append(("XACK", stream, group, *ids))
            readers.append(partial(self._read_ack, stream, ids))
        for (stream, queue_id), items in batch.retries.items():
            retry = calls.retry(topic, queue_id, group, stream, self.consumer, items)
            commands.append(retry.command)
            readers.append(partial(self._read_retry, stream, [o for o, _ in items], retry))
        for stream, queue_id, offset, info in batch.dead:
            meta = info.fields(topic, queue_id, group, offset)
            dead = calls.dead_letter(topic, queue_id, group, stream, offset, meta)
            commands.append(dead.command)
            readers.append(partial(self._read_dead, stream, offset, info, dead))

    def _read_ack(self, stream: str, ids: list[str], result: Any) -> None:
        if isinstance(result, BaseException):
            log.error("acknowledging failed: %r", result,
                      extra=fields(topic=self.topic, group=self.group, stream=stream))  # fmt: skip
        else:
            self.handling.acked(int(result))
        self._settled(stream, ids)

    def _read_retry(self, stream: str, ids: list[str], call: Call[list[int]], reply: Any) -> None:
        try:
            statuses = call.result(reply)
        except Exception as exc:
            log.error("scheduling retries failed: %r", exc,
                      extra=fields(topic=self.topic, group=self.group, stream=stream))  # fmt: skip
        else:
            self.handling.retried(sum(1 for status in statuses if status == 1))
        self._settled(stream, ids)

    def _read_dead(
        self, stream: str, offset: str, info: DeadLetterInfo, call: Call[Any], reply: Any
    ) -> None:
        try:
            dead_id = call.result(reply)
        except Exception as exc:
            log.error("dead-lettering failed: %r", exc, extra=fields(
                topic=self.topic, group=self.group, stream=stream, offset=offset))  # fmt: skip
        else:
            if dead_id:
                self.handling.dead_lettered(f"{stream}@{offset}", info)
        self._settled(stream, [offset])
