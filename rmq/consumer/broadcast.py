"""Broadcasting model: every live instance of a group gets every message.

Each instance reads all queues with XREAD (no consumer group) from its own offsets, kept in Redis
in each queue's hash slot (`<ns>:{<topic>:<q>}:bcast:<group>`, instance id -> last handled entry
id) and advanced after its handlers succeed, with a compare-and-set, so a process that lost its
instance id can never move someone else's offset. At-least-once per instance: a crash replays at
most the batch in flight.

The instance id must be unique among live instances yet stable across restarts:
`RMQ_INSTANCE_ID` (or the consumer's `instance_id=`) wins; otherwise the instance claims the lowest
free slot `<host>:<app_name>:<n>` with a heartbeat lease, so two processes of one app on one host
get different ids, and a restarted process takes its slot (and offsets) back.

A failed message is retried in place `broadcast_retries` times, then recorded in the group's
dead-letter stream and skipped (RocketMQ simply drops it). Offsets of instances that no longer
run can be listed and removed (`broadcast_instances`, `remove_broadcast_instance`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..connection import Backoff, is_transient
from ..context import Context
from ..dlq import DeadLetterInfo
from ..errors import DecodeError
from ..logging import fields
from ..streams import Entry, call
from ..wire import Wire
from .handling import Handling, Verdict
from .inbound import to_message
from .spec import ConsumerSpec, start_argument

__all__ = ["BroadcastConsumer", "broadcast_instances", "remove_broadcast_instance"]

log = logging.getLogger("rmq.broadcast")

_MAX_SLOTS = 1024


class BroadcastConsumer:
    """Runs one `model="broadcasting"` registration until `stop()`."""

    def __init__(self, ctx: Context, spec: ConsumerSpec, name: str) -> None:
        self.ctx = ctx
        self.spec = spec
        self._log_fields = fields(topic=spec.topic, group=spec.group)
        self.name = name
        self.topic = spec.topic
        self.group = spec.group
        self.instance_id: str | None = spec.instance_id or ctx.settings.instance_id
        self.concurrency = spec.concurrency or ctx.settings.concurrency
        self.handling = Handling(spec, self.concurrency)
        self._max_body = ctx.settings.max_body_bytes
        self.stats = self.handling.stats
        self.fetch_batch = spec.fetch_batch or ctx.settings.fetch_batch
        self._slot_token = f"{name}:{os.urandom(4).hex()}"
        self._slot_valid_until = float("inf")
        self._claimed = self.instance_id is None
        self._offsets: dict[str, str] = {}  # stream -> last handled entry id
        self._stored: dict[str, str] = {}  # stream -> offset as last read from / written to Redis
        self._queues: dict[str, int] = {}
        self._stop = anyio.Event()
        self._read_scopes: set[anyio.CancelScope] = set()
        self._consume_scope = anyio.CancelScope()

    def stop(self) -> None:
        """Stop reading; the batch being handled finishes (within `shutdown_grace`) and its
        offsets are saved."""
        self._stop.set()
        for scope in self._read_scopes:
            scope.cancel()
        self._consume_scope.deadline = anyio.current_time() + self.ctx.settings.shutdown_grace

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if self._claimed:
            await self._claim_slot()
        assert self.instance_id is not None
        self.handling.describe("instance", self.instance_id)
        await self._load_offsets()
        try:
            async with anyio.create_task_group() as tg:
                if self._claimed:
                    tg.start_soon(self._renew_slot_loop)
                task_status.started()
                log.info("broadcasting instance %s", self.instance_id, extra=self._log_fields)
                with self._consume_scope:
                    async with anyio.create_task_group() as loops:  # they end after stop()
                        for unit in self.ctx.conn.read_units(list(self._offsets)):
                            loops.start_soon(self._consume_loop, unit)
                tg.cancel_scope.cancel()
        finally:
            if self._claimed and self.instance_id:
                with anyio.CancelScope(shield=True):
                    await self._release_slot()
            self.handling.close()

    # ------------------------------------------------------------------ instance id

    async def _claim_slot(self) -> None:
        settings = self.ctx.settings
        host = socket.gethostname()
        calls = self.ctx.calls
        for n in range(_MAX_SLOTS):
            candidate = f"{host}:{settings.app_name}:{n}"
            started = time.monotonic()
            if await calls.run(calls.claim_slot(self.group, candidate, self._slot_token)):
                self.instance_id = candidate
                self._slot_valid_until = started + settings.lease_ttl * 0.8
                return
        raise RuntimeError(f"no free broadcasting slot among {_MAX_SLOTS} for {host}")

    async def _renew_slot_loop(self) -> None:
        settings = self.ctx.settings
        calls = self.ctx.calls
        assert self.instance_id is not None
        while True:
            await anyio.sleep(settings.lease_ttl / 3)
            started = time.monotonic()
            try:
                held = await calls.run(
                    calls.claim_slot(self.group, self.instance_id, self._slot_token)
                )
            except Exception as exc:
                log.warning("renewing instance slot failed: %r", exc, extra=self._log_fields)
                continue
            if held:
                self._slot_valid_until = started + settings.lease_ttl * 0.8
            else:
                log.warning("instance id %s was taken over; stopping", self.instance_id,
                            extra=self._log_fields)  # fmt: skip
                self._slot_valid_until = 0
                self.stop()
                return

    async def _release_slot(self) -> None:
        assert self.instance_id is not None
        calls = self.ctx.calls
        try:
            await calls.run(calls.release_slot(self.group, self.instance_id, self._slot_token))
        except Exception as exc:
            log.debug("releasing instance slot failed: %r", exc)

    # ------------------------------------------------------------------ offsets

    async def _load_offsets(self) -> None:
        """Read this instance's offsets; a queue without one starts per `spec.start`."""
        assert self.instance_id is not None
        info = await self.ctx.topics.ensure(self.topic)
        client = self.ctx.conn.commands
        # subscribed: trimming keeps what this group's instances have not read yet
        await call(client, "SADD", self.ctx.keys.topic_groups(self.topic), self.group)
        start = start_argument(self.spec.start)
        for queue_id in range(info.queues):
            queue = self.ctx.keys.queue(self.topic, queue_id)
            self._queues[queue.stream] = queue_id
            stored = await call(
                client, "HGET", queue.broadcast_offsets(self.group), self.instance_id
            )
            if stored is not None:
                self._offsets[queue.stream] = self._stored[queue.stream] = stored.decode()
                continue
            self._stored[queue.stream] = ""
            if start == "first":
                self._offsets[queue.stream] = "0-0"
            elif start == "last":
                last = await call(client, "XREVRANGE", queue.stream, "+", "-", "COUNT", 1)
                self._offsets[queue.stream] = last[0][0].decode() if last else "0-0"
            else:
                self._offsets[queue.stream] = (
                    f"{int(start) - 1}-18446744073709551615" if int(start) else "0-0"
                )
            await self._commit(queue.stream)

    async def _commit(self, stream: str) -> None:
        assert self.instance_id is not None
        new = self._offsets[stream]
        if new == self._stored.get(stream):
            return
        calls = self.ctx.calls
        call = calls.broadcast_commit(
            self.topic, self._queues[stream], self.group, self.instance_id, self._stored[stream],
            new,
        )  # fmt: skip
        written = await self.ctx.conn.retry(
            lambda: calls.run(call), what="saving the broadcast offset"
        )
        if not written:
            log.warning(
                "offset moved by another process using id %s; stopping", self.instance_id,
                extra=fields(topic=self.spec.topic, group=self.spec.group, stream=stream),
            )  # fmt: skip
            self._stop.set()
            return
        self._stored[stream] = new

    # ------------------------------------------------------------------ consuming

    async def _consume_loop(self, streams: list[str]) -> None:
        """Read and handle `streams` (all of them on one server; one queue's on a cluster)."""
        settings = self.ctx.settings
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        block = int(settings.block_seconds * 1000)
        wires = [self.ctx.conn.wire_for(streams[0])]
        try:
            await self._consume(streams, wires, backoff, block)
        finally:
            with anyio.CancelScope(shield=True):
                await wires[0].close()

    async def _consume(
        self, streams: list[str], wires: list[Wire], backoff: Backoff, block: int
    ) -> None:
        settings = self.ctx.settings
        while not self._stop.is_set():
            wire = wires[0]
            if time.monotonic() > self._slot_valid_until:
                log.warning("instance slot lease lapsed; stopping", extra=self._log_fields)
                self.stop()
                return
            reply = None
            scope = anyio.CancelScope()
            self._read_scopes.add(scope)
            try:
                with scope:  # stop() cancels only a read, never a batch being handled
                    reply = await wire.call(
                        "XREAD", "COUNT", self.fetch_batch, "BLOCK", block, "STREAMS", *streams,
                        *[self._offsets[s] for s in streams],
                        seconds=settings.block_seconds + settings.socket_timeout,
                    )  # fmt: skip
            except Exception as exc:
                delay = backoff.next_delay()
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "read failed (%r); retrying in %.2fs", exc, delay,
                        extra=self._log_fields)  # fmt: skip
                await anyio.sleep(delay)
                if is_transient(exc) and self.ctx.conn.cluster:  # the queue may have moved
                    await self.ctx.conn.router.follow(exc)
                    await wire.close()
                    wires[0] = self.ctx.conn.wire_for(streams[0])
                continue
            finally:
                self._read_scopes.discard(scope)
            backoff.reset()
            for raw_name, entries in reply or ():
                stream = raw_name.decode()
                await self._handle_batch(stream, entries)
                self._offsets[stream] = entries[-1][0].decode()
                await self._commit(stream)

    async def _handle_batch(self, stream: str, entries: list[Entry]) -> None:
        limiter = anyio.CapacityLimiter(self.concurrency)

        async def one(entry: Entry) -> None:
            async with limiter:
                await self._handle_entry(stream, entry)

        async with anyio.create_task_group() as tg:
            for entry in entries:
                tg.start_soon(one, entry)

    async def _handle_entry(self, stream: str, entry: Entry) -> None:
        entry_id, fields = entry
        queue_id = self._queues[stream]
        handling = self.handling
        try:
            msg = to_message(
                entry_id, fields, self.topic, queue_id, self.group, stream, 1, self._max_body
            )
        except DecodeError as exc:
            handling.set_aside()
            await self._record_dead(stream, queue_id, entry_id.decode(), handling.undecodable(exc))
            return
        selector = self.spec.filter
        if not selector.match_all and not selector.matches(msg.tag, msg.properties):
            handling.filtered()
            return
        handling.received(1)
        outcome = await handling.settle_in_place(msg, lambda: True)
        if outcome is not None and outcome.verdict is Verdict.DEAD_LETTER:
            assert outcome.dead is not None
            await self._record_dead(stream, queue_id, msg.offset, outcome.dead)

    async def _record_dead(
        self, stream: str, queue_id: int, offset: str, info: DeadLetterInfo
    ) -> None:
        """Copy the entry to the group's DLQ (there is no pending entry to acknowledge)."""
        calls = self.ctx.calls
        meta = info.fields(self.topic, queue_id, self.group, offset)
        call = calls.dead_letter(self.topic, queue_id, self.group, stream, offset, meta, copy=True)
        await self.ctx.conn.retry(lambda: calls.run(call), what="dead-lettering")
        self.handling.dead_lettered(f"{stream}@{offset}", info)


async def broadcast_instances(ctx: Context, topic: str, group: str) -> dict[str, dict[str, Any]]:
    """Every instance id with stored offsets: its offset per queue and whether its slot is live."""
    info = await ctx.topics.get(topic)
    out: dict[str, dict[str, Any]] = {}
    for queue_id in range(info.queues if info else 0):
        stored = await call(
            ctx.conn.commands, "HGETALL", ctx.keys.queue(topic, queue_id).broadcast_offsets(group)
        )
        for instance, offset in stored.items():
            entry = out.setdefault(instance.decode(), {"offsets": {}, "live": False})
            entry["offsets"][queue_id] = offset.decode()
    for instance, entry in out.items():
        entry["live"] = bool(
            await call(ctx.conn.commands, "EXISTS", ctx.keys.broadcast_slot(group, instance))
        )
    return out


async def remove_broadcast_instance(ctx: Context, topic: str, group: str, instance: str) -> int:
    """Delete a (stale) instance's offsets on every queue; returns how many were removed."""
    info = await ctx.topics.get(topic)
    removed = 0
    for queue_id in range(info.queues if info else 0):
        key = ctx.keys.queue(topic, queue_id).broadcast_offsets(group)
        removed += int(await call(ctx.conn.commands, "HDEL", key, instance))
    return removed
