"""What happened to delivered entries, written to Redis in one round trip per flush.

Handlers finish at their own pace; their outcomes queue up here and one task writes them: one
XACK per stream for the successes, one `retry` script call per stream for the failures to try
again, one `dead_letter` call per message that gives up. Every write is idempotent (an entry that is
no longer pending is left alone), so a flush interrupted by a lost connection is simply repeated,
and a flush interrupted by shutdown keeps its outcomes for the final, shielded flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .. import metrics
from ..context import Context
from ..dlq import DeadLetterInfo
from ..router import WireSet

__all__ = ["Outcomes"]

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


class Outcomes:
    """Buffers acks, retries and dead letters of one consumer and writes them in batches."""

    def __init__(
        self, ctx: Context, topic: str, group: str, consumer: str, settled: Settled, stats: Any
    ) -> None:
        self.ctx = ctx
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self.stats = stats
        self._settled = settled
        self._pending = _Pending()
        self._wakeup = asyncio.Event()
        self._wire: WireSet | None = None

    # ------------------------------------------------------------------ recording

    def ack(self, stream: str, offset: str) -> None:
        acks = self._pending.acks.get(stream)
        if acks is None:
            self._pending.acks[stream] = [offset]
        else:
            acks.append(offset)
        self._wakeup.set()

    def ack_many(self, stream: str, offsets: list[str]) -> None:
        self._pending.acks.setdefault(stream, []).extend(offsets)
        self._wakeup.set()

    def retry(self, stream: str, queue_id: int, offset: str, delay_ms: int) -> None:
        self._pending.retries.setdefault((stream, queue_id), []).append((offset, delay_ms))
        self._wakeup.set()

    def dead_letter(self, stream: str, queue_id: int, offset: str, info: DeadLetterInfo) -> None:
        self._pending.dead.append((stream, queue_id, offset, info))
        self._wakeup.set()

    # ------------------------------------------------------------------ writing

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
        while self._pending:
            batch, self._pending = self._pending, _Pending()
            commands, readers = self._commands(batch)
            try:
                results = await self.ctx.conn.retry(
                    partial(wire.execute, commands, timeout), what="writing outcomes"
                )
            except BaseException:
                # Cancelled (shutdown) or failed: keep them for the next (shielded) flush.
                batch.merge(self._pending)
                self._pending = batch
                raise
            for read, result in zip(readers, results, strict=True):
                read(result)

    async def close(self) -> None:
        if self._wire is not None:
            await self._wire.close()
            self._wire = None

    def _commands(
        self, batch: _Pending
    ) -> tuple[list[tuple[Any, ...]], list[Callable[[Any], None]]]:
        ctx, group = self.ctx, self.group
        scripts = ctx.conn.scripts
        commands: list[tuple[Any, ...]] = []
        readers: list[Callable[[Any], None]] = []
        for stream, ids in batch.acks.items():
            commands.append(("XACK", stream, group, *ids))
            readers.append(partial(self._read_ack, stream, ids))
        wake = ctx.keys.wake(self.topic)
        for (stream, queue_id), items in batch.retries.items():
            queue = ctx.keys.queue(self.topic, queue_id)
            args: list[Any] = [group, self.consumer, wake]
            for offset, delay_ms in items:
                args += (offset, delay_ms)
            retry_keys = (stream, queue.retry(group), queue.retry_payload(group))
            commands.append(scripts["retry"].evalsha_args(retry_keys, args))
            readers.append(partial(self._read_retry, stream, [o for o, _ in items]))
        for stream, queue_id, offset, info in batch.dead:
            queue = ctx.keys.queue(self.topic, queue_id)
            meta = info.fields(self.topic, queue_id, group, offset)
            keys = (stream, queue.dlq(group))
            commands.append(scripts["dead_letter"].evalsha_args(keys, (group, offset, *meta)))
            readers.append(partial(self._read_dead, stream, offset, info))
        return commands, readers

    def _read_ack(self, stream: str, ids: list[str], result: Any) -> None:
        if isinstance(result, BaseException):
            log.error("%s/%s: XACK on %s failed: %r", self.topic, self.group, stream, result)
        else:
            self.stats.acked += int(result)
        self._settled(stream, ids)

    def _read_retry(self, stream: str, ids: list[str], result: Any) -> None:
        if isinstance(result, BaseException):
            log.error("%s/%s: retry on %s failed: %r", self.topic, self.group, stream, result)
        else:
            retried = sum(1 for status in result if status == 1)
            self.stats.retried += retried
            metrics.retried(self.topic, self.group, retried)
        self._settled(stream, ids)

    def _read_dead(self, stream: str, offset: str, info: DeadLetterInfo, result: Any) -> None:
        if isinstance(result, BaseException):
            log.error("%s/%s: dead-letter on %s failed: %r", self.topic, self.group, stream, result)
        elif result:
            self.stats.dead_lettered += 1
            label = "rejected" if info.reason.startswith("rejected") else info.reason
            metrics.dead_lettered(self.topic, self.group, label)
            log.warning(
                "%s/%s: dead-lettered %s@%s: %s %s",
                self.topic, self.group, stream, offset, info.reason, info.error,
            )  # fmt: skip
        self._settled(stream, [offset])
