"""Orderly consumption: each queue is consumed by one live member, one message at a time, in
offset order (RocketMQ's MessageListenerOrderly with the broker-side queue lock).

- Members heartbeat and share the queues out with an allocation strategy (`membership`).
- A member consumes a queue only while it holds the queue's lease (owner token, TTL, renewed
  every `lease_ttl / 3`). Acknowledgements and dead letters go through scripts that check the
  token (fencing): a member that lost its lease (paused past the TTL, partitioned) cannot
  acknowledge anything on that queue any more; before each message it also checks that its lease
  is still valid by its own clock, so after a pause it stops instead of going on.
- A new owner first claims every entry still pending on the queue (the previous owner's), then
  handles them in order, then new ones.
- A failure is retried in place after `suspend` (or `rmq.Retry(delay=...)`), up to `max_retries`,
  then the message is dead-lettered and the queue moves on.

A message whose handler was running when its member lost the lease may finish there and also be
handled by the new owner (at-least-once); the order of first handlings per queue is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from functools import partial

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..calls import FENCED
from ..connection import Backoff, is_nogroup, is_transient
from ..context import Context
from ..dlq import DeadLetterInfo
from ..errors import DecodeError
from ..logging import fields as log_fields
from ..message import Message
from ..streams import Entry
from ..wire import Wire
from .handling import Handling, Verdict
from .inbound import Positions, declare_group, to_message
from .membership import Lease, Membership, allocate_averagely
from .spec import ConsumerSpec

__all__ = ["OrderlyConsumer"]

log = logging.getLogger("rmq.orderly")

_ACK_BATCH = 64
_VALIDITY = 0.8  # a lease counts as held for this share of its TTL after each renewal


class _Undecodable:
    """Placeholder in a queue's buffer for an entry to dead-letter, keeping its place in order."""

    __slots__ = ("info", "offset")

    def __init__(self, offset: str, info: DeadLetterInfo) -> None:
        self.offset = offset
        self.info = info


class _Owned:
    """A queue this member holds the lease of."""

    __slots__ = (
        "acks", "buffer", "drain_from", "event", "lease", "lost", "phase", "queue_id",
        "revoked", "stream", "valid_until",
    )  # fmt: skip

    def __init__(self, queue_id: int, stream: str, lease: Lease, valid_until: float) -> None:
        self.queue_id = queue_id
        self.stream = stream
        self.lease = lease
        self.valid_until = valid_until
        self.buffer: deque[Message | _Undecodable] = deque()
        self.acks: list[str] = []
        self.event = asyncio.Event()
        self.phase = "claim"  # claim -> drain -> live
        self.drain_from = "0"
        self.revoked = False
        self.lost = False

    @property
    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self.valid_until


class OrderlyConsumer:
    """Runs one `mode="orderly"` registration until `stop()`."""

    def __init__(self, ctx: Context, spec: ConsumerSpec, name: str) -> None:
        self.ctx = ctx
        self.spec = spec
        self._log_fields = log_fields(topic=spec.topic, group=spec.group)
        self.name = name
        self.topic = spec.topic
        self.group = spec.group
        self.handling = Handling(spec, spec.concurrency or ctx.settings.concurrency)
        self.stats = self.handling.stats
        self.membership = Membership(ctx, self.topic, self.group, name)
        self.owned: dict[int, _Owned] = {}
        self.fetch_batch = spec.fetch_batch or ctx.settings.fetch_batch
        self._allocate = spec.allocate or allocate_averagely
        self._positions = Positions()
        self._max_body = ctx.settings.max_body_bytes
        self._changed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._workers: TaskGroup | None = None
        self._reading: set[str] = set()
        self._read_done = asyncio.Event()

    async def declare(self, again: bool = False) -> None:
        """Create the group on every queue; `again` when it vanished (see `Positions`)."""
        positions = self._positions if again else None
        await declare_group(self.ctx, self.topic, self.group, self.spec.start, again=positions)

    def stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()
        for owned in self.owned.values():
            owned.revoked = True
            owned.event.set()
        self._changed.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.ctx.conn.retry(self.declare, what="declaring groups")
        grace = self.ctx.settings.shutdown_grace
        try:
            async with anyio.create_task_group() as workers:
                self._workers = workers
                async with anyio.create_task_group() as loops:
                    loops.start_soon(self._rebalance_loop)
                    loops.start_soon(self._fetch_loop)
                    task_status.started()
                    await self._stop_requested.wait()
                    loops.cancel_scope.cancel()
                for owned in self.owned.values():
                    owned.revoked = True
                    owned.event.set()
                workers.cancel_scope.deadline = anyio.current_time() + grace
        finally:
            with anyio.move_on_after(max(grace, 5.0), shield=True):
                for owned in list(self.owned.values()):
                    await self._close_queue(owned)
                try:
                    await self.membership.leave()
                except Exception as exc:
                    log.warning(
                        "could not leave the group cleanly: %r", exc, extra=self._log_fields
                    )
            self.handling.close()

    # ------------------------------------------------------------------ rebalancing

    async def _rebalance_loop(self) -> None:
        settings = self.ctx.settings
        interval = min(settings.rebalance_interval, settings.lease_ttl / 3)
        while True:
            try:
                await self._rebalance()
            except Exception as exc:
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "rebalance failed: %r", exc, extra=self._log_fields)
            await anyio.sleep(interval)

    async def _rebalance(self) -> None:
        members = await self.membership.heartbeat()
        info = await self.ctx.topics.ensure(self.topic)
        mine = set(self._allocate(info.queues, members, self.name))
        ttl = self.ctx.settings.lease_ttl
        for queue_id, owned in list(self.owned.items()):
            if queue_id not in mine and not owned.revoked:
                log.info("handing queue %d over", queue_id, extra=self._log_fields)
                owned.revoked = True
                owned.event.set()
                continue
            started = time.monotonic()
            if await owned.lease.renew():
                owned.valid_until = started + ttl * _VALIDITY
            elif not owned.lost:
                log.warning("lost the lease of queue %d", queue_id, extra=self._log_fields)
                owned.lost = owned.revoked = True
                owned.event.set()
        for queue_id in sorted(mine - set(self.owned)):
            if self._stopping:
                return
            lease = Lease(self.ctx, self.topic, queue_id, self.group, self.name)
            started = time.monotonic()
            if await lease.acquire():
                stream = self.ctx.keys.queue(self.topic, queue_id).stream
                owned = _Owned(queue_id, stream, lease, started + ttl * _VALIDITY)
                self.owned[queue_id] = owned
                log.info("consuming queue %d", queue_id, extra=self._log_fields)
                assert self._workers is not None
                self._workers.start_soon(self._queue_worker, owned)
                self._changed.set()

    async def _close_queue(self, owned: _Owned) -> None:
        """Flush its acks and release its lease (unless lost), then forget it.

        The lease is released only once no read of this member still covers the queue, so the
        next owner's takeover claims every entry this member was handed.
        """
        try:
            while owned.stream in self._reading:
                self._read_done.clear()
                await self._read_done.wait()
            if owned.valid and owned.acks:
                await self._flush_acks(owned)
            if not owned.lost:
                await owned.lease.release()
        except Exception as exc:
            log.warning("closing queue %d: %r", owned.queue_id, exc, extra=self._log_fields)
        finally:
            if self.owned.get(owned.queue_id) is owned:
                del self.owned[owned.queue_id]

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self) -> None:
        settings = self.ctx.settings
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        wires: dict[str, Wire] = {}  # one per read unit (a cluster reads each queue apart)
        try:
            while True:
                try:
                    fetched = await self._fetch_once(wires)
                except Exception as exc:
                    await self._on_fetch_error(exc, backoff)
                    for wire in wires.values():  # reconnect (a queue may have moved nodes)
                        await wire.close()
                    wires.clear()
                    for owned in self.owned.values():  # a lost reply may have delivered entries
                        if owned.phase == "live":
                            owned.phase, owned.drain_from = "drain", "0"
                    continue
                backoff.reset()
                if not fetched:
                    self._changed.clear()
                    with anyio.move_on_after(settings.block_seconds):
                        await self._changed.wait()
        finally:
            for wire in wires.values():
                await wire.close()

    async def _fetch_once(self, wires: dict[str, Wire]) -> bool:
        """One read per unit for the queues that need messages; False when there was none."""
        ready = [o for o in self.owned.values() if not o.revoked and not o.buffer and o.valid]
        if not ready:
            return False
        by_stream = {o.stream: o for o in ready}
        units = self.ctx.conn.read_units(list(by_stream))
        for unit in units:
            if unit[0] not in wires:
                wires[unit[0]] = self.ctx.conn.wire_for(unit[0])
        results = await asyncio.gather(
            *(self._fetch_unit(wires[u[0]], [by_stream[s] for s in u]) for u in units),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return True

    async def _fetch_unit(self, wire: Wire, ready: list[_Owned]) -> None:
        """Claim, drain or read the `ready` queues (all readable in one command)."""
        settings = self.ctx.settings
        for owned in ready:
            if owned.phase == "claim":
                await self._claim_all(wire, owned)
        draining = [o for o in ready if o.phase == "drain"]
        head = ("XREADGROUP", "GROUP", self.group, self.name, "COUNT", self.fetch_batch)
        if draining:
            streams = [o.stream for o in draining]
            positions = [o.drain_from for o in draining]
            reply = await wire.call(*head, "STREAMS", *streams, *positions)
            got = {name.decode(): entries for name, entries in reply or ()}
            for owned in draining:
                entries = got.get(owned.stream) or []
                if entries:
                    owned.drain_from = entries[-1][0].decode()
                    await self._buffer(owned, entries, redelivered=True)
                else:
                    owned.phase = "live"
            return
        live = [o for o in ready if o.phase == "live"]
        # A read blocks for less than a fifth of the lease TTL: a member that lost its lease (or
        # was paused) has no read left on the server by the time another member can take over,
        # so no entry can be handed to it after the new owner claimed the queue's pending ones.
        block = min(settings.block_seconds, settings.lease_ttl * 0.15)
        streams = [o.stream for o in live]
        self._reading.update(streams)
        try:
            reply = await wire.call(
                *head, "BLOCK", max(1, int(block * 1000)), "STREAMS", *streams,
                *[">"] * len(live), seconds=block + settings.socket_timeout,
            )  # fmt: skip
        finally:
            self._reading.difference_update(streams)
            self._read_done.set()
        by_stream = {o.stream: o for o in live}
        for name, entries in reply or ():
            target = by_stream.get(name.decode())
            if target is not None and entries:
                await self._buffer(target, entries, redelivered=False)

    async def _claim_all(self, wire: Wire, owned: _Owned) -> None:
        """Take over every entry still pending on the queue (its previous owner's), in order."""
        cursor = "0-0"
        while True:
            reply = await wire.call(
                "XAUTOCLAIM", owned.stream, self.group, self.name, 0, cursor, "COUNT", 1000,
                "JUSTID",
            )  # fmt: skip
            cursor = reply[0].decode()
            if reply[1]:
                self.handling.reclaimed(len(reply[1]))
            if cursor == "0-0":
                break
        owned.phase = "drain"

    async def _buffer(self, owned: _Owned, entries: list[Entry], redelivered: bool) -> None:
        handling = self.handling
        if entries:
            self._positions.saw(owned.stream, entries[-1][0])
        for entry_id, fields in entries:
            offset = entry_id.decode()
            if not fields:
                handling.lost_payloads(owned.stream, 1)
                owned.acks.append(offset)
                continue
            try:
                msg = to_message(
                    entry_id, fields, self.topic, owned.queue_id, self.group, owned.stream,
                    2 if redelivered else 1, self._max_body,
                )  # fmt: skip
            except DecodeError as exc:
                owned.buffer.append(_Undecodable(offset, handling.undecodable(exc)))
                continue
            if not self.spec.filter.match_all and not self.spec.filter.matches(
                msg.tag, msg.properties
            ):
                handling.filtered()
                owned.acks.append(offset)
                continue
            owned.buffer.append(msg)
            handling.received(1)
        owned.event.set()

    async def _on_fetch_error(self, exc: Exception, backoff: Backoff) -> None:
        if is_nogroup(exc):
            log.warning("consumer group missing; declaring it again", extra=self._log_fields)
            try:
                await self.declare(again=True)
                for owned in self.owned.values():
                    owned.phase, owned.drain_from = "claim", "0"
                return
            except Exception as declare_error:
                exc = declare_error
        delay = backoff.next_delay()
        level = logging.WARNING if is_transient(exc) else logging.ERROR
        log.log(level, "fetch failed (%r); retrying in %.2fs", exc, delay, extra=self._log_fields)
        await anyio.sleep(delay)

    # ------------------------------------------------------------------ handling

    async def _queue_worker(self, owned: _Owned) -> None:
        try:
            while not owned.revoked:
                if not owned.buffer:
                    if owned.acks and not await self._flush_acks(owned):
                        return
                    if owned.buffer:  # arrived while the acks were flushing
                        continue
                    owned.event.clear()  # no await between the checks and the wait
                    if _revoked(owned):
                        return
                    await owned.event.wait()
                    continue
                if not owned.valid:
                    log.warning(
                        "lease of queue %d expired before the next message; stopping there",
                        owned.queue_id, extra=self._log_fields,
                    )  # fmt: skip
                    owned.lost = True
                    return
                item = owned.buffer[0]
                settled = await self._settle(owned, item)
                if not settled:
                    return
                owned.buffer.popleft()
                if not owned.buffer:
                    self._changed.set()  # the fetcher may be waiting for a queue to need more
                if len(owned.acks) >= _ACK_BATCH and not await self._flush_acks(owned):
                    return
        finally:
            owned.buffer.clear()
            with anyio.CancelScope(shield=True):
                await self._close_queue(owned)
            self._changed.set()

    async def _settle(self, owned: _Owned, item: Message | _Undecodable) -> bool:
        """Handle `item` in place until it succeeds or is dead-lettered; False = stop the queue."""
        if isinstance(item, _Undecodable):
            self.handling.set_aside()
            return await self._dead_letter(owned, item.offset, item.info)
        outcome = await self.handling.settle_in_place(
            item, lambda: not owned.revoked and owned.valid
        )
        if outcome is None:
            return False  # stays pending: the next owner handles it, in order
        if outcome.verdict is Verdict.DEAD_LETTER:
            assert outcome.dead is not None
            return await self._dead_letter(owned, item.offset, outcome.dead)
        owned.acks.append(item.offset)
        return True

    async def _flush_acks(self, owned: _Owned) -> bool:
        """Acknowledge the queue's handled messages (fenced); False when the lease is gone."""
        acks, owned.acks = owned.acks, []
        if not acks:
            return True
        calls = self.ctx.calls
        call = calls.fenced_ack(owned.stream, owned.lease.key, self.group, owned.lease.token, acks)
        try:
            result = await self.ctx.conn.retry(partial(calls.run, call), what="acknowledging")
        except BaseException:
            owned.acks = acks + owned.acks
            raise
        if result == FENCED:
            log.warning(
                "fenced: queue %d has another owner now; %d handled messages stay pending",
                owned.queue_id, len(acks), extra=self._log_fields,
            )  # fmt: skip
            owned.lost = owned.revoked = True
            return False
        self.handling.acked(result)
        return True

    async def _dead_letter(self, owned: _Owned, offset: str, info: DeadLetterInfo) -> bool:
        """Dead-letter one entry under the lease (fenced); False when the lease is gone."""
        if owned.acks and not await self._flush_acks(owned):
            return False
        calls = self.ctx.calls
        meta = info.fields(self.topic, owned.queue_id, self.group, offset)
        call = calls.dead_letter(
            self.topic, owned.queue_id, self.group, owned.stream, offset, meta,
            lease=(owned.lease.key, owned.lease.token),
        )  # fmt: skip
        result = await self.ctx.conn.retry(partial(calls.run, call), what="dead-lettering")
        if result == FENCED:
            owned.lost = owned.revoked = True
            return False
        if result:
            self.handling.dead_lettered(f"{owned.stream}@{offset}", info)
        return True


def _revoked(owned: _Owned) -> bool:
    return owned.revoked
