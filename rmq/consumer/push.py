"""The push consumer: clustering model, concurrent consumption, at-least-once.

One `PushConsumer` holds the state of one `@app.consumer(...)` registration: its streams (each
queue stream and the group's retry stream beside it, `Source`), the entries it holds (delivered
and not settled: they count against `prefetch`), the messages waiting for a handler, and up to
`concurrency` handler tasks, started as work arrives. It reads nothing itself: the app's
`PushRuntime` (rmq.consumer.runtime) runs a few shared read lanes per Redis node, one claimer and
one outcome writer for every push consumer, so a worker's connections and background loops do not
grow with its topics. Lanes hand entries to `accept`; handlers' outcomes go to `Outcomes`;
settled entries free room (`_settled`), which lets the lanes read for this consumer again.

Stopping: the runtime stops the lanes, running handlers finish within `shutdown_grace`, outcomes
are flushed, and every entry this consumer still holds is handed back (made claimable at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from .. import metrics
from ..context import Context
from ..dlq import DeadLetterInfo
from ..errors import DecodeError
from ..message import Message
from ..streams import Entry, xpending_rows
from .handling import Handling, Verdict
from .inbound import Positions, declare_group, to_message
from .outcomes import Outcomes
from .spec import ConsumerSpec

__all__ = ["MAX_FETCH_GROWTH", "PushConsumer", "Source", "Spawn"]

log = logging.getLogger("rmq.consumer")

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], object]
"""Starts a task running an async function of no arguments (a task group's `start_soon`)."""

MAX_FETCH_GROWTH = 8
"""A stream's read COUNT doubles while reads come back full, up to this many times fetch_batch."""


class Source:
    """One stream a push consumer reads: a queue stream or the group's retry stream beside it."""

    __slots__ = (
        "claim_cursor", "claim_more", "consumer", "drain", "next_check", "queue_id", "ready",
        "stream", "want",
    )  # fmt: skip

    def __init__(self, consumer: PushConsumer, queue_id: int, stream: str) -> None:
        self.consumer = consumer
        self.queue_id = queue_id
        self.stream = stream
        self.restart()
        self.want = consumer.fetch_batch
        self.claim_cursor = "0-0"
        self.claim_more = False
        self.next_check = 0.0
        """Monotonic time of the next look for entries to claim (0: at the next tick)."""

    def restart(self) -> None:
        """Read from the start again: this consumer's own pending entries first, then new ones."""
        self.drain: str | None = "0"
        self.ready = True


class PushConsumer:
    """One consumer registration's state, fed by the app's shared `PushRuntime`."""

    def __init__(self, ctx: Context, spec: ConsumerSpec, name: str) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.spec = spec
        self.name = name
        self.topic = spec.topic
        self.group = spec.group
        self.concurrency = spec.concurrency or settings.concurrency
        self.prefetch = max(spec.prefetch or settings.prefetch, self.concurrency)
        self.fetch_batch = spec.fetch_batch or settings.fetch_batch
        self.visibility = spec.visibility_timeout or settings.visibility_timeout
        self.handling = Handling(spec, self.concurrency)
        self.stats = self.handling.stats
        self.meter = self.handling.meter
        self.outcomes = Outcomes(ctx, self.topic, self.group, name, self._settled, self.handling)
        self.sources: list[Source] = []
        self._by_stream: dict[str, Source] = {}
        self.positions = Positions()
        self._max_body = settings.max_body_bytes
        self._ready: deque[Message] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()  # one per worker waiting for work
        self._workers = 0
        self._held: dict[str, dict[str, float]] = {}
        self.held_count = 0
        self.starved = False
        """A lane wanted to read for it while it had no room."""
        self.on_room: Callable[[PushConsumer], None] = _nothing
        """Called when room frees after `starved` (the runtime wakes its lanes)."""
        self.spawn: Spawn | None = None
        """Starts a handler task (set by the runtime)."""
        self.stopping = False
        self.running = 0

    # ------------------------------------------------------------------ streams

    def add_queues(self, queues: int) -> None:
        """The topic has `queues` queues: read each queue stream and the group's retry stream."""
        for queue_id in range(queues):
            keys = self.ctx.calls.queue(self.topic, queue_id)
            for stream in (keys.stream, keys.retry_stream(self.group)):
                if stream not in self._by_stream:
                    source = Source(self, queue_id, stream)
                    self.sources.append(source)
                    self._by_stream[stream] = source
                    self._held[stream] = {}

    async def redeclare(self) -> None:
        """The group vanished (Redis restarted empty, ...): declare it again, from the last entry
        this consumer was handed on each stream (`Positions`), not at `start`."""
        await declare_group(self.ctx, self.topic, self.group, self.spec.start,
                            retry_streams=True, again=self.positions)  # fmt: skip

    def room(self) -> int:
        """How many more entries it may hold now (`prefetch`)."""
        return 0 if self.stopping else self.prefetch - self.held_count

    def count_for(self, source: Source) -> int:
        """The COUNT of the next read of `source`, within the room `prefetch` leaves."""
        return max(1, min(source.want, self.room() // len(self.sources)))

    # ------------------------------------------------------------------ accepting

    async def accept(self, source: Source, entries: list[Entry], *, redelivered: bool) -> None:
        """Buffer delivered entries as messages; set aside the ones that cannot be handled."""
        stream = source.stream
        held = self._held[stream]
        now = time.monotonic()
        accepted = 0
        set_aside = 0
        trimmed: list[str] = []
        filtered: list[str] = []
        selector = self.spec.filter
        if entries:
            self.positions.saw(stream, entries[-1][0])
        fresh = []
        for entry in entries:  # held now, before any await: nothing is taken twice
            offset = entry[0].decode()
            if offset not in held:
                held[offset] = now
                fresh.append((offset, entry))
        try:
            deliveries = await self._delivery_counts(stream, entries) if redelivered else None
        except BaseException:
            for offset, _ in fresh:  # not taken after all: the next delivery may take them
                held.pop(offset, None)
            raise
        for offset, (entry_id, fields) in fresh:
            if not fields:
                trimmed.append(offset)
                continue
            count = deliveries.get(offset, 2) if deliveries is not None else 1
            info: DeadLetterInfo | None = None
            if count > self.spec.max_deliveries:
                info = self.handling.too_many_deliveries(count)
            else:
                try:
                    msg = to_message(
                        entry_id, fields, self.topic, source.queue_id, self.group, stream, count,
                        self._max_body,
                    )  # fmt: skip
                except DecodeError as exc:
                    info = self.handling.undecodable(exc)
            if info is not None:
                self.held_count += 1
                self.outcomes.dead_letter(stream, source.queue_id, offset, info)
                set_aside += 1
                continue
            if not selector.match_all and not selector.matches(msg.tag, msg.properties):
                filtered.append(offset)
                continue
            self._ready.append(msg)
            accepted += 1
        if filtered:
            self.held_count += len(filtered)
            self.handling.filtered(len(filtered))
            self.outcomes.ack_many(stream, filtered)
        if set_aside:
            self.handling.set_aside(set_aside)
        if accepted or filtered or set_aside or trimmed:
            metrics.in_flight(
                self.topic, self.group, accepted + len(filtered) + set_aside + len(trimmed)
            )
        if accepted:
            self.held_count += accepted
            self.handling.received(accepted)
            self._wake(accepted)
        if trimmed:
            self.held_count += len(trimmed)
            self.handling.lost_payloads(stream, len(trimmed))
            self.outcomes.ack_many(stream, trimmed)

    async def _delivery_counts(self, stream: str, entries: list[Entry]) -> dict[str, int]:
        if not entries:
            return {}
        rows = await xpending_rows(
            self.ctx.conn.commands, stream, self.group, entries[0][0], entries[-1][0],
            len(entries) * 2, self.name,
        )  # fmt: skip
        return {row.entry_id.decode(): row.deliveries for row in rows}

    # ------------------------------------------------------------------ handling

    def _wake(self, count: int) -> None:
        """Wake up to `count` idle handler tasks, starting new ones up to `concurrency`."""
        idle = self._idle
        while count > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1
        while count > 0 and self._workers < self.concurrency and self.spawn is not None:
            self._workers += 1
            self.spawn(self._worker)
            count -= 1

    async def _worker(self) -> None:
        ready = self._ready
        idle = self._idle
        loop = asyncio.get_running_loop()
        try:
            while not self.stopping:
                if ready:
                    await self._handle(ready.popleft())
                else:
                    waiter = loop.create_future()
                    idle.append(waiter)
                    await waiter
        finally:
            self._workers -= 1

    async def _handle(self, msg: Message) -> None:
        self.running += 1
        try:
            outcome = await self.handling.handle(msg)
        finally:
            self.running -= 1
        verdict = outcome.verdict
        if verdict is Verdict.ACK or verdict is Verdict.SKIP:
            self.outcomes.ack(msg._stream, msg.offset)
        elif verdict is Verdict.RETRY:
            self.outcomes.retry(msg._stream, msg.queue_id, msg.offset, int(outcome.delay * 1000))
        else:
            assert outcome.dead is not None
            self.outcomes.dead_letter(msg._stream, msg.queue_id, msg.offset, outcome.dead)

    def _settled(self, stream: str, offsets: Iterable[str]) -> None:
        """Outcomes are written: the entries no longer count against `prefetch`."""
        held = self._held.get(stream)
        if held is None:
            return
        popped = 0
        for offset in offsets:
            if held.pop(offset, None) is not None:
                popped += 1
        self.held_count -= popped
        metrics.in_flight(self.topic, self.group, -popped)
        self.meter.flush()
        if self.starved and self.room() > 0:
            self.starved = False
            for source in self.sources:
                source.ready = True
            self.on_room(self)

    def stop(self) -> None:
        """Stop taking new messages (handlers running now finish; see the runtime)."""
        self.stopping = True
        idle, self._idle = self._idle, deque()
        for waiter in idle:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------ upkeep

    def stale_held(self, now: float) -> dict[str, list[str]]:
        """Per stream, the held entries whose idle time should be reset (a third of the
        visibility timeout since the last reset), marked as reset now."""
        threshold = self.visibility / 3
        out: dict[str, list[str]] = {}
        for stream, held in self._held.items():
            stale = [offset for offset, since in held.items() if now - since >= threshold]
            if stale:
                for offset in stale:
                    held[offset] = now
                out[stream] = stale
        return out

    async def release_own_pending(self) -> None:
        """Make every entry this consumer still owns claimable by others at once."""
        conn, calls = self.ctx.conn, self.ctx.calls
        idle = int(self.visibility * 1000)
        for stream in self._by_stream:
            start = "-"
            while True:
                rows = await xpending_rows(
                    conn.commands, stream, self.group, start, "+", 500, self.name
                )
                if not rows:
                    break
                ids = [row.entry_id for row in rows]
                await calls.run(calls.set_idle(stream, self.group, self.name, idle, ids))
                start = "(" + ids[-1].decode()
            self._held[stream].clear()
        metrics.in_flight(self.topic, self.group, -self.held_count)
        self.held_count = 0
        self._ready.clear()
        self.meter.flush()


def _nothing(_: PushConsumer) -> None:
    return None
