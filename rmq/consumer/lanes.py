"""Read lanes: the connections that read every push consumer of an app, a few per Redis node.

A lane reads the streams (`Source`s) of some consumers on one node over one dedicated
connection. While a source may hold more entries (its last read came back full, or it has
pending entries of its own to drain), the lane reads it without blocking, every ready source of a
consumer in one XREADGROUP and every consumer in one round trip, COUNT growing while reads come
back full. When nothing is ready it waits for new entries in one blocking call:

- a *group lane* serves the sources of one consumer group (across every topic the app reads with
  that group): it waits with a blocking XREADGROUP over all of them, and Redis hands each new entry
  to exactly one of the group's blocked consumers;
- the *doorbell lane* serves every group beyond the first `read_lanes - 1` of a node: it waits
  with one blocking XREAD (no group) over all their streams from the last entry it knows of on
  each (`armed`), and reads the groups of the streams that rang.

So a worker holds at most `read_lanes` reading connections per node, however many topics and
groups it consumes.

On Redis Cluster one command can only name the keys of one slot (one queue), so a blocking read
covers a single queue: a node whose queues and groups fit in `read_lanes` gets a blocking lane
per (queue, group); a node with more gets one *polling lane*, which reads each queue without
blocking and, while a queue stays empty, looks at it less and less often (from 5 ms, doubling, up
to `block_seconds`): busy queues are read back to back, idle ones cost a command every couple of
seconds. A consumer without room (`prefetch` reached) is left out until its handlers
settle enough entries; while one is starved, lanes block only briefly, so it resumes within a few
milliseconds of having room.

On Redis Cluster a queue that moved to another node (MOVED) makes the lane ask for a new plan
(`Replan`): the runtime regroups every source by node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from ..connection import Backoff, is_nogroup, is_transient
from ..context import Context
from ..ids import entry_key
from ..logging import fields
from ..wire import Wire
from .push import MAX_FETCH_GROWTH, PushConsumer, Source

__all__ = ["DOORBELL", "GROUP", "POLL", "Lane", "Replan"]

log = logging.getLogger("rmq.consumer")

_STARVED_BLOCK_MS = 10
"""How long a lane blocks while some consumer waits for room (so it resumes promptly)."""
_DOORBELL_COUNT = 16
_ARM_CHUNK = 1000


class Replan(Exception):
    """A source moved to another node: the lanes must be planned again."""


GROUP, DOORBELL, POLL = "group", "doorbell", "poll"
_POLL_FIRST = 0.005


class Lane:
    """One connection reading `sources` (all on one node), waiting as `mode` says when nothing
    is ready: GROUP (one blocking XREADGROUP), DOORBELL (one blocking XREAD) or POLL."""

    def __init__(self, ctx: Context, sources: Sequence[Source], mode: str) -> None:
        self.ctx = ctx
        self.sources = list(sources)
        self.mode = mode
        self.doorbell = mode == DOORBELL
        self._cluster = ctx.conn.cluster
        self._quiet: dict[Source, tuple[float, float]] = {}
        """POLL: per empty source, (when to look again, the current step)."""
        self.consumers: list[PushConsumer] = list(dict.fromkeys(s.consumer for s in sources))
        self._by_stream: dict[str, list[Source]] = {}
        for source in self.sources:
            self._by_stream.setdefault(source.stream, []).append(source)
        self.armed: dict[str, str] = {}
        """Doorbell: per stream, the last entry id this lane knows of."""
        self.changed = asyncio.Event()
        self.rounds = 0

    @property
    def node_key(self) -> str:
        return self.sources[0].stream

    def wake(self) -> None:
        """Some consumer has room again."""
        self.changed.set()

    async def run(self) -> None:
        """Read until cancelled; raises `Replan` when a source moved to another node."""
        settings = self.ctx.settings
        conn = self.ctx.conn
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        # One wire for the lane's life: after a failure it reconnects by itself on the next call
        # (so `stalled()` sees a loop that keeps failing).
        wire = conn.wire_for(self.node_key)
        try:
            while True:
                try:
                    if self.doorbell and not self.armed:
                        await self._arm(wire)
                    await self._step(wire)
                except Replan:
                    raise
                except Exception as exc:
                    for source in self.sources:
                        source.restart()  # a lost reply may have delivered entries: drain them
                    await self._on_error(exc, backoff)
                    continue
                backoff.reset()
        finally:
            with anyio.CancelScope(shield=True):
                await wire.close()

    async def _on_error(self, exc: Exception, backoff: Backoff) -> None:
        if isinstance(exc, MovedError | AskError):
            await self.ctx.conn.router.follow(exc)
            raise Replan(str(exc)) from exc
        if is_transient(exc):
            await self.ctx.conn.router.follow(exc)
            if self.ctx.conn.cluster:
                raise Replan(str(exc)) from exc
        delay = backoff.next_delay()
        if is_transient(exc):
            log.warning("reading: Redis unavailable (%s); retrying in %.2fs", exc, delay)
        else:
            log.error("reading failed: %r; retrying in %.2fs", exc, delay)
        await asyncio.sleep(delay)

    # ------------------------------------------------------------------ one step

    async def _step(self, wire: Wire) -> None:
        self.rounds += 1
        rooms = {c: c.room() for c in self.consumers}
        if self.mode == POLL:
            self._poll_due()
        ready = [s for s in self.sources if s.ready and rooms[s.consumer] > 0]
        if ready:
            await self._read(wire, ready)
            return
        waiting = [s for s in self.sources if rooms[s.consumer] > 0]
        for consumer, room in rooms.items():
            if room <= 0:  # it will call back (`on_room`) once it settles entries
                consumer.starved = True
        if not waiting:  # every consumer is full: wait until one settles entries
            self.changed.clear()
            await self.changed.wait()
            return
        starved = any(c.starved for c in self.consumers)
        block = _STARVED_BLOCK_MS if starved else int(self.ctx.settings.block_seconds * 1000)
        if self.mode == POLL:
            await self._poll_wait(block / 1000)
        elif self.doorbell:
            await self._ring(wire, waiting, block)
        else:
            await self._wait_read(wire, waiting, block)

    def _poll_due(self) -> None:
        now = time.monotonic()
        for source, (at, _) in self._quiet.items():
            if at <= now:
                source.ready = True

    async def _poll_wait(self, longest: float) -> None:
        """POLL: sleep until the next quiet source is due for a look (or a consumer has room)."""
        now = time.monotonic()
        soonest = min((at for at, _ in self._quiet.values()), default=now + longest)
        self.changed.clear()
        with anyio.move_on_after(max(0.0, min(soonest - now, longest))):
            await self.changed.wait()

    def _quieten(self, source: Source, got: bool) -> None:
        """POLL: a source that came back empty is looked at again later and later."""
        if got:
            self._quiet.pop(source, None)
            return
        _, step = self._quiet.get(source, (0.0, 0.0))
        step = min(max(step * 2, _POLL_FIRST), self.ctx.settings.block_seconds)
        self._quiet[source] = (time.monotonic() + step, step)

    def _timeout(self, block_ms: int = 0) -> float:
        return block_ms / 1000 + self.ctx.settings.socket_timeout

    async def _read(self, wire: Wire, ready: list[Source]) -> None:
        """One non-blocking XREADGROUP per consumer with ready sources, in one round trip."""
        by_consumer: dict[tuple[PushConsumer, int], list[Source]] = {}
        for source in ready:  # on a cluster, one command per queue (one slot)
            unit = key_slot(source.stream.encode()) if self._cluster else 0
            by_consumer.setdefault((source.consumer, unit), []).append(source)
        commands: list[tuple[Any, ...]] = []
        plan: list[tuple[PushConsumer, list[Source], int]] = []
        for (consumer, _), sources in by_consumer.items():
            count = max(consumer.count_for(s) for s in sources)
            ids = [s.drain or ">" for s in sources]
            streams = [s.stream for s in sources]
            commands.append(("XREADGROUP", "GROUP", consumer.group, consumer.name, "COUNT",
                             count, "STREAMS", *streams, *ids))  # fmt: skip
            plan.append((consumer, sources, count))
        replies = await wire.execute(commands, self._timeout())
        caught_up = False
        for (consumer, sources, count), reply in zip(plan, replies, strict=True):
            if isinstance(reply, BaseException):
                await self._failed_read(consumer, reply)
                continue
            got = _by_name(reply)
            for source in sources:
                entries = got.get(source.stream) or []
                if source.drain is not None:  # this consumer's own pending entries
                    if entries:
                        source.drain = entries[-1][0].decode()
                        await consumer.accept(source, entries, redelivered=True)
                    else:
                        source.drain = None  # drained: read new entries from now on
                    continue
                if entries:
                    self._saw(source.stream, entries[-1][0])
                    await consumer.accept(source, entries, redelivered=False)
                if len(entries) >= count:
                    source.want = min(source.want * 2, consumer.fetch_batch * MAX_FETCH_GROWTH)
                else:
                    source.want = consumer.fetch_batch
                    source.ready = False
                    caught_up = caught_up or bool(entries)
                if self.mode == POLL:
                    self._quieten(source, bool(entries))
        if caught_up:
            await asyncio.sleep(0)  # handlers of what came first, then the next (blocking) read

    async def _wait_read(self, wire: Wire, waiting: list[Source], block_ms: int) -> None:
        """A group lane with nothing ready: one blocking XREADGROUP over all its sources."""
        consumer = waiting[0].consumer
        count = consumer.fetch_batch
        streams = [s.stream for s in waiting]
        command = ("XREADGROUP", "GROUP", consumer.group, consumer.name, "COUNT", count,
                   "BLOCK", block_ms, "STREAMS", *streams, *(">",) * len(streams))  # fmt: skip
        self.changed.clear()
        (reply,) = await wire.execute([command], self._timeout(block_ms))
        if isinstance(reply, BaseException):
            await self._failed_read(consumer, reply, everyone=True)
            return
        got = _by_name(reply)
        for source in waiting:
            entries = got.get(source.stream)
            if entries:
                await source.consumer.accept(source, entries, redelivered=False)
                source.ready = len(entries) >= count

    async def _ring(self, wire: Wire, waiting: list[Source], block_ms: int) -> None:
        """The doorbell: one blocking XREAD over every waiting source's stream; the streams
        with entries past what the lane knows of are read by their groups next."""
        streams = list(dict.fromkeys(s.stream for s in waiting))
        ids = [self.armed.get(s, "0-0") for s in streams]
        command = ("XREAD", "COUNT", _DOORBELL_COUNT, "BLOCK", block_ms, "STREAMS", *streams, *ids)
        self.changed.clear()
        (reply,) = await wire.execute([command], self._timeout(block_ms))
        if isinstance(reply, BaseException):
            raise reply
        for stream, entries in _by_name(reply).items():
            if entries:
                self._saw(stream, entries[-1][0])
                for source in self._by_stream.get(stream, ()):
                    source.ready = True

    async def _arm(self, wire: Wire) -> None:
        """Doorbell: the last entry of every stream, before anything is read (so nothing that
        arrives after it goes unnoticed, and nothing older rings)."""
        streams = list(self._by_stream)
        for start in range(0, len(streams), _ARM_CHUNK):
            chunk = streams[start : start + _ARM_CHUNK]
            commands = [("XREVRANGE", s, "+", "-", "COUNT", 1) for s in chunk]
            for stream, reply in zip(chunk, await wire.execute(commands, self._timeout()),
                                     strict=True):  # fmt: skip
                if isinstance(reply, BaseException):
                    raise reply
                self.armed[stream] = reply[0][0].decode() if reply else "0-0"

    def _saw(self, stream: str, entry_id: bytes) -> None:
        if self.doorbell:
            current = self.armed.get(stream)
            if current is None or entry_key(entry_id) > entry_key(current):
                self.armed[stream] = entry_id.decode()

    async def _failed_read(
        self, consumer: PushConsumer, error: BaseException, *, everyone: bool = False
    ) -> None:
        """A read's error reply: a vanished group is declared again; the rest raise."""
        if not is_nogroup(error):
            raise error
        targets = self.consumers if everyone else [consumer]
        for target in targets:
            log.warning("consumer group missing; declaring it again",
                        extra=fields(topic=target.topic, group=target.group))  # fmt: skip
            await target.redeclare()
            for source in target.sources:
                source.restart()


def _by_name(reply: Any) -> dict[str, list[Any]]:
    return {name.decode(): entries for name, entries in reply or ()}
