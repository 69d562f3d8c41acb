"""The push consumer runtime: clustering model, concurrent consumption, at-least-once.

One `PushConsumer` serves one `@app.consumer(...)` registration:

- a fetcher reads the group's queue streams with XREADGROUP (always with COUNT, BLOCK in a loop),
  first draining this consumer's own pending entries, into a bounded in-memory buffer (`prefetch`);
- `concurrency` workers take messages from the buffer and run the handler (plain functions run in
  worker threads); a normal return acknowledges, an exception leaves the entry pending;
- an acker sends the acknowledgements, one XACK per queue per round trip, while handlers go on;
- maintenance keeps long-running deliveries from being claimed (resets their idle time, owner
  checked), claims entries idle past the visibility timeout (a crashed consumer's work) with
  XAUTOCLAIM, and removes long-idle consumers that own nothing.

Stopping: fetching stops, running handlers finish within `shutdown_grace`, acknowledgements are
flushed, and every entry this consumer still holds is handed back (made claimable at once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..connection import Backoff, is_nogroup, is_transient
from ..context import Context
from ..errors import DecodeError
from ..message import Message
from ..streams import Entry, xautoclaim, xpending_rows
from ..wire import Wire
from .inbound import dead_letter, declare_group, to_message
from .spec import ConsumerSpec

__all__ = ["ConsumerStats", "PushConsumer", "consumer_name"]

log = logging.getLogger("rmq.consumer")

_REAP_EVERY_TICKS = 60
_CLAIM_COUNT = 100


def consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


@dataclass(slots=True)
class ConsumerStats:
    """Counters of one consumer since it started."""

    received: int = 0
    handled: int = 0
    failed: int = 0
    acked: int = 0
    reclaimed: int = 0
    trimmed: int = 0
    dead_lettered: int = 0


class _Queue:
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
        self.stats = ConsumerStats()
        self._is_async = spec.is_async
        self._limiter = anyio.CapacityLimiter(self.concurrency)
        self._queues: dict[str, _Queue] = {}
        self._ready: deque[Message] = deque()
        self._held: dict[str, dict[str, float]] = {}
        self._held_count = 0
        self._acks: dict[str, list[str]] = {}
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._ack_wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._running = 0
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._ack_wire: Wire | None = None

    # ------------------------------------------------------------------ lifecycle

    async def declare(self) -> None:
        """Create the topic (unless strict) and the group on every queue, from `spec.start`."""
        info = await declare_group(self.ctx, self.topic, self.group, self.spec.start)
        for queue_id in range(info.queues):
            stream = self.ctx.keys.queue(self.topic, queue_id).stream
            if stream not in self._queues:
                self._queues[stream] = _Queue(queue_id, stream)
                self._held[stream] = {}

    def stop(self) -> None:
        """Ask the consumer to stop gracefully (returns at once; `run` returns when done)."""
        self._stopping = True
        self._stop_requested.set()
        self._work.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Consume until `stop()`; then drain gracefully and return."""
        await self.ctx.conn.retry(self.declare, what="declaring groups")
        grace = self.ctx.settings.shutdown_grace
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(self._acker)
                services.start_soon(self._maintenance)
                async with anyio.create_task_group() as workers:
                    for _ in range(self.concurrency):
                        workers.start_soon(self._worker)
                    async with anyio.create_task_group() as fetchers:
                        fetchers.start_soon(self._fetch_loop)
                        task_status.started()
                        await self._stop_requested.wait()
                        fetchers.cancel_scope.cancel()
                    workers.cancel_scope.deadline = anyio.current_time() + grace
                    if self._running:
                        log.info(
                            "%s: waiting up to %.0fs for %d handler(s)",
                            self.spec.name,
                            grace,
                            self._running,
                        )
                services.cancel_scope.cancel()
        finally:
            with anyio.move_on_after(max(grace, 5.0), shield=True):
                await self._shutdown_flush()

    async def _shutdown_flush(self) -> None:
        try:
            await self._flush_acks()
            await self._release_own_pending()
        except Exception as exc:
            log.warning(
                "%s: could not flush at shutdown (%r); unacked entries stay pending",
                self.spec.name,
                exc,
            )
        for task in list(self._side_tasks):
            task.cancel()
        if self._ack_wire is not None:
            await self._ack_wire.close()

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self) -> None:
        settings = self.ctx.settings
        wire = self.ctx.conn.wire()
        timeout = settings.block_seconds + settings.socket_timeout
        head = ("XREADGROUP", "GROUP", self.group, self.name, "COUNT")
        block = ("BLOCK", int(settings.block_seconds * 1000), "STREAMS")
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        drain: dict[str, str] = dict.fromkeys(self._queues, "0")
        try:
            while True:
                room = self.prefetch - self._held_count
                if room <= 0:
                    self._room.clear()
                    await self._room.wait()
                    continue
                count = max(1, min(self.fetch_batch, room // len(self._queues)))
                if drain:  # this consumer's own pending entries first
                    command = (*head, count, "STREAMS", *drain, *drain.values())
                else:
                    streams = self._queues.keys()
                    command = (*head, count, *block, *streams, *(">",) * len(streams))
                try:
                    reply = await wire.call(*command, seconds=timeout)
                except Exception as exc:
                    drain = dict.fromkeys(self._queues, "0")
                    await self._on_fetch_error(exc, backoff)
                    continue
                backoff.reset()
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
                        await self._accept(raw_name.decode(), entries, redelivered=False)
        finally:
            await wire.close()

    async def _on_fetch_error(self, exc: Exception, backoff: Backoff) -> None:
        error: Exception = exc
        if is_nogroup(exc):
            log.warning("%s: consumer group missing (%s); declaring it again", self.spec.name, exc)
            try:
                await self.declare()
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

    async def _accept(
        self,
        stream: str,
        entries: list[Entry],
        *,
        redelivered: bool,
        deliveries: dict[str, int] | None = None,
    ) -> None:
        queue = self._queues.get(stream)
        if queue is None:
            return
        held = self._held[stream]
        now = time.monotonic()
        accepted = 0
        trimmed: list[str] = []
        undecodable: list[tuple[str, DecodeError]] = []
        if redelivered and deliveries is None:
            deliveries = await self._delivery_counts(stream, entries)
        for entry_id, fields in entries:
            offset = entry_id.decode()
            if offset in held:
                continue
            if not fields:
                trimmed.append(offset)
                continue
            count = deliveries.get(offset, 2) if deliveries is not None else 1
            try:
                msg = to_message(
                    entry_id, fields, self.topic, queue.queue_id, self.group, stream, count
                )
            except DecodeError as exc:
                undecodable.append((offset, exc))
                continue
            held[offset] = now
            self._ready.append(msg)
            accepted += 1
        if accepted:
            self._held_count += accepted
            self.stats.received += accepted
            self._work.set()
        if trimmed:
            self.stats.trimmed += len(trimmed)
            log.warning(
                "%s: %d pending entries of %s lost their payload (trimmed or deleted); acking them",
                self.spec.name, len(trimmed), stream,
            )  # fmt: skip
            self._acks.setdefault(stream, []).extend(trimmed)
            self._ack_wakeup.set()
        for offset, error in undecodable:
            self._spawn(self._set_aside(queue, offset, error))

    async def _delivery_counts(self, stream: str, entries: list[Entry]) -> dict[str, int]:
        if not entries:
            return {}
        rows = await xpending_rows(
            self.ctx.conn.commands, stream, self.group, entries[0][0], entries[-1][0],
            len(entries) * 2, self.name,
        )  # fmt: skip
        return {row.entry_id.decode(): row.deliveries for row in rows}

    async def _set_aside(self, queue: _Queue, offset: str, exc: DecodeError) -> None:
        try:
            result = await dead_letter(
                self.ctx, topic=self.topic, queue_id=queue.queue_id, group=self.group,
                entry_id=offset, reason="undecodable", error=exc,
            )  # fmt: skip
        except Exception as err:
            log.error(
                "%s: could not set aside undecodable entry %s: %r", self.spec.name, offset, err
            )
            return
        if result:
            self.stats.dead_lettered += 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # ------------------------------------------------------------------ handling

    async def _worker(self) -> None:
        ready = self._ready
        work = self._work
        while not self._stopping:
            if not ready:
                work.clear()
                await work.wait()
                continue
            await self._handle(ready.popleft())

    async def _handle(self, msg: Message) -> None:
        self._running += 1
        try:
            if self._is_async:
                await self.spec.handler(msg)  # type: ignore[misc]
            else:
                await anyio.to_thread.run_sync(self.spec.handler, msg, limiter=self._limiter)
        except Exception:
            self.stats.failed += 1
            log.exception(
                "%s: handler failed on %s[%d]@%s (msg_id %s); it stays pending and is delivered "
                "again after the visibility timeout", self.spec.name, msg.topic, msg.queue_id,
                msg.offset, msg.msg_id,
            )  # fmt: skip
            self._forget(msg._stream, msg.offset)
        else:
            self.stats.handled += 1
            acks = self._acks.get(msg._stream)
            if acks is None:
                self._acks[msg._stream] = [msg.offset]
            else:
                acks.append(msg.offset)
            self._ack_wakeup.set()
        finally:
            self._running -= 1

    def _forget(self, stream: str, offset: str) -> None:
        if self._held[stream].pop(offset, None) is not None:
            self._held_count -= 1
            self._room.set()

    # ------------------------------------------------------------------ acknowledging

    async def _acker(self) -> None:
        while True:
            await self._ack_wakeup.wait()
            self._ack_wakeup.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        if self._ack_wire is None:
            self._ack_wire = self.ctx.conn.wire()
        wire = self._ack_wire
        timeout = self.ctx.settings.socket_timeout
        while self._acks:
            acks, self._acks = self._acks, {}
            commands = [("XACK", stream, self.group, *ids) for stream, ids in acks.items()]
            try:
                results = await self.ctx.conn.retry(
                    partial(wire.execute, commands, timeout), what="acknowledging"
                )
            except BaseException:
                # Cancelled (shutdown) or failed: keep the acks for the next (shielded) flush.
                # XACK is idempotent, so sending some of them twice is harmless.
                for stream, ids in acks.items():
                    self._acks.setdefault(stream, []).extend(ids)
                raise
            for (stream, ids), result in zip(acks.items(), results, strict=True):
                if isinstance(result, BaseException):
                    log.error("%s: XACK on %s failed: %r", self.spec.name, stream, result)
                else:
                    self.stats.acked += int(result)
                held = self._held[stream]
                for offset in ids:
                    if held.pop(offset, None) is not None:
                        self._held_count -= 1
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
        conn = self.ctx.conn
        for stream, held in self._held.items():
            stale = [offset for offset, since in held.items() if now - since >= threshold]
            if not stale:
                continue
            lost = await conn.scripts.call(
                conn.commands, "set_idle", (stream,), (self.group, self.name, 0, *stale)
            )
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
                self.stats.trimmed += len(deleted)
                log.warning(
                    "%s: %d pending entries of %s were trimmed before anyone acknowledged them",
                    self.spec.name, len(deleted), queue.stream,
                )  # fmt: skip
            if entries:
                self.stats.reclaimed += len(entries)
                log.info(
                    "%s: claimed %d idle entries of %s", self.spec.name, len(entries), queue.stream
                )
                await self._accept(queue.stream, entries, redelivered=True)

    async def _reap_consumers(self) -> None:
        conn = self.ctx.conn
        min_idle = int(max(3600.0, self.visibility * 10) * 1000)
        for stream in self._queues:
            await conn.scripts.call(
                conn.commands, "reap_consumers", (stream,), (self.group, min_idle, self.name)
            )

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
                await conn.scripts.call(
                    conn.commands, "set_idle", (stream,), (self.group, self.name, idle, *ids)
                )
                start = "(" + ids[-1].decode()
            self._held[stream].clear()
        self._held_count = 0
        self._ready.clear()
