"""The push consumer runtime: clustering model, concurrent consumption, at-least-once.

One `PushConsumer` serves one `@app.consumer(...)` registration:

- a fetcher reads the group's queue streams and its retry streams (`:rs:<group>`, same hash tag)
  with XREADGROUP (always with COUNT, BLOCK in a loop), first draining this consumer's own pending
  entries, into a bounded in-memory buffer (`prefetch`);
- `concurrency` workers take messages from the buffer and run the handler (plain functions run in
  worker threads), under the consumer's `timeout` if it has one;
- the outcome of each message (ack; retry after a backoff; dead letter) is written in batches by
  `Outcomes`, each write an idempotent script or XACK;
- maintenance keeps long-running deliveries from being claimed (resets their idle time, owner
  checked), claims entries idle past the visibility timeout (a crashed consumer's work) with
  XAUTOCLAIM, dead-letters entries delivered more than `max_deliveries` times (they keep killing
  their consumers), and removes long-idle consumers that own nothing.

Stopping: fetching stops, running handlers finish within `shutdown_grace`, outcomes are flushed,
and every entry this consumer still holds is handed back (made claimable at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable

import anyio
from anyio.abc import TaskStatus

from .. import metrics
from ..connection import Backoff, is_nogroup, is_transient
from ..context import Context
from ..dlq import DeadLetterInfo
from ..errors import DecodeError
from ..message import Message
from ..streams import Entry, xautoclaim, xpending_rows
from .handling import Handling, Verdict
from .inbound import Positions, declare_group, to_message
from .outcomes import Outcomes
from .spec import ConsumerSpec

__all__ = ["PushConsumer"]

log = logging.getLogger("rmq.consumer")

_REAP_EVERY_TICKS = 60
_CLAIM_COUNT = 100
_MAX_FETCH_GROWTH = 8


class _Queue:
    """One stream the consumer reads: a queue stream or the group's retry stream beside it."""

    __slots__ = ("claim_cursor", "queue_id", "stream")

    def __init__(self, queue_id: int, stream: str) -> None:
        self.queue_id = queue_id
        self.stream = stream
        self.claim_cursor = "0-0"


class PushConsumer:
    """Runs one consumer registration until `stop()`."""

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
        self._queues: dict[str, _Queue] = {}
        self._positions = Positions()
        self._max_body = settings.max_body_bytes
        self._ready: deque[Message] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()  # one per worker waiting for work
        self._held: dict[str, dict[str, float]] = {}
        self._held_count = 0
        self._room = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._running = 0

    # ------------------------------------------------------------------ lifecycle

    async def declare(self, again: bool = False) -> None:
        """Create the topic (unless strict) and the group on every queue and retry stream;
        `again` when the group vanished (from where this consumer was on each queue)."""
        info = await declare_group(
            self.ctx, self.topic, self.group, self.spec.start, retry_streams=True,
            again=self._positions if again else None,
        )  # fmt: skip
        for queue_id in range(info.queues):
            queue = self.ctx.keys.queue(self.topic, queue_id)
            for stream in (queue.stream, queue.retry_stream(self.group)):
                if stream not in self._queues:
                    self._queues[stream] = _Queue(queue_id, stream)
                    self._held[stream] = {}

    def stop(self) -> None:
        """Ask the consumer to stop gracefully (returns at once; `run` returns when done)."""
        self._stopping = True
        self._stop_requested.set()
        self._wake(len(self._idle))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Consume until `stop()`; then drain gracefully and return."""
        await self.ctx.conn.retry(self.declare, what="declaring groups")
        grace = self.ctx.settings.shutdown_grace
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(self.outcomes.run)
                services.start_soon(self._maintenance)
                async with anyio.create_task_group() as workers:
                    for _ in range(self.concurrency):
                        workers.start_soon(self._worker)
                    async with anyio.create_task_group() as fetchers:
                        for unit in self.ctx.conn.read_units(list(self._queues)):
                            fetchers.start_soon(self._fetch_loop, unit)
                        task_status.started()
                        await self._stop_requested.wait()
                        fetchers.cancel_scope.cancel()
                    workers.cancel_scope.deadline = anyio.current_time() + grace
                    if self._running:
                        log.info(
                            "%s: waiting up to %.0fs for %d handler(s)",
                            self.spec.name, grace, self._running,
                        )  # fmt: skip
                services.cancel_scope.cancel()
        finally:
            with anyio.move_on_after(max(grace, 5.0), shield=True):
                await self._shutdown_flush()

    async def _shutdown_flush(self) -> None:
        try:
            await self.outcomes.flush()
            await self._release_own_pending()
        except Exception as exc:
            log.warning(
                "%s: could not flush at shutdown (%r); unacknowledged entries stay pending",
                self.spec.name, exc,
            )  # fmt: skip
        await self.outcomes.close()
        self.handling.close()

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self, streams: list[str]) -> None:
        """Read `streams` (all of them on one server; one queue's on a cluster) until cancelled.

        COUNT starts at `fetch_batch` and doubles (up to `_MAX_FETCH_GROWTH` times it) while reads
        come back full, always within the room `prefetch` leaves; a read that is not full resets
        it, and then the handlers of what it brought start before the next read is written.
        """
        settings = self.ctx.settings
        conn = self.ctx.conn
        wire = conn.wire_for(streams[0])
        timeout = settings.block_seconds + settings.socket_timeout
        head = ("XREADGROUP", "GROUP", self.group, self.name, "COUNT")
        block = ("BLOCK", int(settings.block_seconds * 1000), "STREAMS")
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        drain: dict[str, str] = dict.fromkeys(streams, "0")
        base = self.fetch_batch
        ceiling = base * _MAX_FETCH_GROWTH
        want = base
        per_stream = len(self._queues)
        try:
            while True:
                room = self.prefetch - self._held_count
                if room <= 0:
                    self._room.clear()
                    await self._room.wait()
                    continue
                count = max(1, min(want, room // per_stream))
                if drain:  # this consumer's own pending entries first
                    command = (*head, count, "STREAMS", *drain, *drain.values())
                else:
                    command = (*head, count, *block, *streams, *(">",) * len(streams))
                try:
                    reply = await wire.call(*command, seconds=timeout)
                except Exception as exc:
                    drain = dict.fromkeys(streams, "0")
                    await self._on_fetch_error(exc, backoff)
                    if conn.cluster:  # the queue may have moved to another node
                        await wire.close()
                        wire = conn.wire_for(streams[0])
                    continue
                backoff.reset()
                full = False
                if drain:
                    finished = set(drain)
                    for raw_name, entries in reply or ():
                        stream = raw_name.decode()
                        if entries:
                            drain[stream] = entries[-1][0].decode()
                            finished.discard(stream)
                            await self._accept(stream, entries, redelivered=True)
                    for stream in finished:
                        drain.pop(stream, None)
                else:
                    for raw_name, entries in reply or ():
                        if len(entries) >= count:
                            full = True
                        await self._accept(raw_name.decode(), entries, redelivered=False)
                if full:
                    want = min(want * 2, ceiling)
                else:
                    want = base
                    if reply and self._ready:
                        await asyncio.sleep(0)  # caught up: handlers first, then a blocking read
        finally:
            await wire.close()

    async def _on_fetch_error(self, exc: Exception, backoff: Backoff) -> None:
        error: Exception = exc
        if is_transient(exc):
            await self.ctx.conn.router.follow(exc)
        if is_nogroup(exc):
            log.warning("%s: consumer group missing (%s); declaring it again", self.spec.name, exc)
            try:
                await self.declare(again=True)
            except Exception as declare_error:
                error = declare_error
            else:
                return
        delay = backoff.next_delay()
        if is_transient(error):
            log.warning(
                "%s: Redis unavailable (%s); retrying in %.2fs", self.spec.name, error, delay
            )
        else:
            log.error("%s: fetch failed: %r; retrying in %.2fs", self.spec.name, error, delay)
        await anyio.sleep(delay)

    async def _accept(self, stream: str, entries: list[Entry], *, redelivered: bool) -> None:
        """Buffer delivered entries as messages; set aside the ones that cannot be handled."""
        queue = self._queues.get(stream)
        if queue is None:
            return
        held = self._held[stream]
        now = time.monotonic()
        accepted = 0
        set_aside = 0
        trimmed: list[str] = []
        filtered: list[str] = []
        selector = self.spec.filter
        deliveries = await self._delivery_counts(stream, entries) if redelivered else None
        if entries:
            self._positions.saw(stream, entries[-1][0])
        for entry_id, fields in entries:
            offset = entry_id.decode()
            if offset in held:
                continue
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
                        entry_id, fields, self.topic, queue.queue_id, self.group, stream, count,
                        self._max_body,
                    )  # fmt: skip
                except DecodeError as exc:
                    info = self.handling.undecodable(exc)
            if info is not None:
                held[offset] = now
                self._held_count += 1
                self.outcomes.dead_letter(stream, queue.queue_id, offset, info)
                set_aside += 1
                continue
            held[offset] = now
            if not selector.match_all and not selector.matches(msg.tag, msg.properties):
                filtered.append(offset)
                continue
            self._ready.append(msg)
            accepted += 1
        if filtered:
            self._held_count += len(filtered)
            self.handling.filtered(len(filtered))
            self.outcomes.ack_many(stream, filtered)
        if set_aside:
            self.handling.set_aside(set_aside)
        if accepted or filtered or set_aside:
            metrics.in_flight(self.topic, self.group, accepted + len(filtered) + set_aside)
        if accepted:
            self._held_count += accepted
            self.handling.received(accepted)
            self._wake(accepted)
        if trimmed:
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
        """Wake up to `count` idle workers (one per new message, not all of them)."""
        idle = self._idle
        while count > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    async def _worker(self) -> None:
        ready = self._ready
        idle = self._idle
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if ready:
                await self._handle(ready.popleft())
            else:
                waiter = loop.create_future()
                idle.append(waiter)
                await waiter

    async def _handle(self, msg: Message) -> None:
        self._running += 1
        try:
            outcome = await self.handling.handle(msg)
        finally:
            self._running -= 1
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
        self._held_count -= popped
        metrics.in_flight(self.topic, self.group, -popped)
        self.meter.flush()
        self._room.set()

    # ------------------------------------------------------------------ maintenance

    async def _maintenance(self) -> None:
        interval = self.ctx.settings.claim_interval
        tick = 0
        while True:
            await anyio.sleep(interval)
            tick += 1
            try:
                await self._refresh_held()
                await self._claim_idle()
                if tick % _REAP_EVERY_TICKS == 0:
                    await self._reap_consumers()
            except Exception as exc:
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "%s: maintenance failed: %r", self.spec.name, exc)

    async def _refresh_held(self) -> None:
        """Reset the idle time of entries this consumer holds, so nobody claims them."""
        now = time.monotonic()
        threshold = self.visibility / 3
        calls = self.ctx.calls
        for stream, held in self._held.items():
            stale = [offset for offset, since in held.items() if now - since >= threshold]
            if not stale:
                continue
            lost = await calls.run(calls.set_idle(stream, self.group, self.name, 0, stale))
            for offset in stale:
                if offset in held:
                    held[offset] = now
            if lost:
                log.debug("%s: %d held entries are no longer ours", self.spec.name, len(lost))

    async def _claim_idle(self) -> None:
        """Take over entries idle longer than the visibility timeout (their consumer died)."""
        commands = self.ctx.conn.commands
        min_idle = int(self.visibility * 1000)
        for queue in list(self._queues.values()):
            room = self.prefetch - self._held_count
            if room <= 0 or self._stopping:
                return
            cursor, entries, deleted = await xautoclaim(
                commands, queue.stream, self.group, self.name, min_idle, queue.claim_cursor,
                min(_CLAIM_COUNT, room),
            )  # fmt: skip
            queue.claim_cursor = cursor
            if deleted:
                self.handling.lost_payloads(queue.stream, len(deleted))
            if entries:
                self.handling.reclaimed(len(entries))
                log.info(
                    "%s: claimed %d idle entries of %s", self.spec.name, len(entries), queue.stream
                )
                await self._accept(queue.stream, entries, redelivered=True)

    async def _reap_consumers(self) -> None:
        calls = self.ctx.calls
        min_idle = int(max(3600.0, self.visibility * 10) * 1000)
        reaps = [calls.reap_consumers(s, self.group, min_idle, self.name) for s in self._queues]
        await calls.results(reaps)

    async def _release_own_pending(self) -> None:
        """Make every entry this consumer still owns claimable by others at once."""
        conn = self.ctx.conn
        idle = int(self.visibility * 1000)
        for stream in self._queues:
            start = "-"
            while True:
                rows = await xpending_rows(
                    conn.commands, stream, self.group, start, "+", 500, self.name
                )
                if not rows:
                    break
                ids = [row.entry_id for row in rows]
                await self.ctx.calls.run(self.ctx.calls.set_idle(stream, self.group, self.name,
                                                                 idle, ids))  # fmt: skip
                start = "(" + ids[-1].decode()
            self._held[stream].clear()
        metrics.in_flight(self.topic, self.group, -self._held_count)
        self._held_count = 0
        self._ready.clear()
        self.meter.flush()
