"""The push runtime: runs every concurrently consumed registration of an app together.

- **Declaring** the groups of all of them takes a few pipelined round trips (`declare_all`),
  whatever their number.
- **Reading**: a few `Lane`s per Redis node (at most `read_lanes` connections each), planned from
  the consumers' streams by node and group.
- **Upkeep**: one loop claims dead consumers' entries and keeps held ones from being claimed.
- **Writing**: one `OutcomeWriter` acknowledges, retries and dead-letters for all of them.
- **Handling**: each consumer starts up to its `concurrency` handler tasks as work arrives.

So a worker with a thousand topics holds the same handful of connections and runs the same
handful of loops as a worker with one.

Stopping: reading and claiming stop, handlers finish within `shutdown_grace`, outcomes are
written, and every entry a consumer still holds is handed back (claimable by others at once).
"""

from __future__ import annotations

import logging

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from redis.crc import key_slot

from ..context import Context
from ..health import drop_empty_consumers
from .inbound import declare_groups
from .lanes import DOORBELL, GROUP, POLL, Lane, Replan
from .outcomes import OutcomeWriter
from .push import PushConsumer, Source, Spawn
from .upkeep import Upkeep

__all__ = ["PushRuntime", "plan_lanes"]

log = logging.getLogger("rmq.consumer")


def plan_lanes(ctx: Context, consumers: list[PushConsumer]) -> list[Lane]:
    """Lanes for every consumer's sources, per node. Standalone: one group lane per consumer
    group while there are at most `read_lanes` groups, else `read_lanes - 1` group lanes (the
    groups with the most streams) and one doorbell lane for the rest. Cluster (a blocking read
    names one slot): one group lane per (queue, group) while they fit in `read_lanes`, else one
    polling lane for the node."""
    router = ctx.conn.router
    cluster = ctx.conn.cluster
    by_node: dict[str, dict[tuple[str, int], list[Source]]] = {}
    for consumer in consumers:
        for source in consumer.sources:
            node = router.node_for(source.stream).name
            unit = key_slot(source.stream.encode()) if cluster else 0
            by_node.setdefault(node, {}).setdefault((consumer.group, unit), []).append(source)
    lanes: list[Lane] = []
    limit = max(1, ctx.settings.read_lanes)
    for units in by_node.values():
        ordered = sorted(units.values(), key=len, reverse=True)
        if len(ordered) <= limit:
            lanes += [Lane(ctx, sources, GROUP) for sources in ordered]
            continue
        if cluster:
            lanes.append(Lane(ctx, [s for sources in ordered for s in sources], POLL))
            continue
        lanes += [Lane(ctx, sources, GROUP) for sources in ordered[: limit - 1]]
        rest = [source for sources in ordered[limit - 1 :] for source in sources]
        lanes.append(Lane(ctx, rest, DOORBELL))
    return lanes


class PushRuntime:
    """Runs `consumers` (push, concurrently) until `stop()`."""

    def __init__(self, ctx: Context, consumers: list[PushConsumer]) -> None:
        self.ctx = ctx
        self.consumers = consumers
        self.writer = OutcomeWriter(ctx)
        self.upkeep = Upkeep(ctx, consumers)
        self.lanes: list[Lane] = []
        self.replans = 0
        self._stop = anyio.Event()
        for consumer in consumers:
            consumer.outcomes.writer = self.writer
            consumer.on_room = self._room

    async def declare(self) -> None:
        """Create the topics (unless strict) and groups of every consumer, in a few round trips."""
        await declare_all(self.ctx, self.consumers)

    def stop(self) -> None:
        self._stop.set()

    def _room(self, consumer: PushConsumer) -> None:
        for lane in self.lanes:
            lane.wake()
        self.upkeep.wake()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Consume until `stop()`; then drain gracefully and return."""
        grace = self.ctx.settings.shutdown_grace
        await self.ctx.conn.retry(self.declare, what="declaring groups")
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(self.writer.run)
                async with anyio.create_task_group() as handlers:
                    spawn: Spawn = handlers.start_soon
                    for consumer in self.consumers:
                        consumer.spawn = spawn
                    async with anyio.create_task_group() as readers:
                        readers.start_soon(self._read)
                        readers.start_soon(self.upkeep.run)
                        task_status.started()
                        await self._stop.wait()
                        readers.cancel_scope.cancel()
                    for consumer in self.consumers:
                        consumer.stop()
                    handlers.cancel_scope.deadline = anyio.current_time() + grace
                    running = sum(c.running for c in self.consumers)
                    if running:
                        log.info("waiting up to %.0fs for %d handler(s)", grace, running)
                services.cancel_scope.cancel()
        finally:
            with anyio.move_on_after(max(grace, 5.0), shield=True):
                await self._shutdown_flush()

    async def _read(self) -> None:
        """Run the lanes; plan them again when a queue moved to another node."""
        while True:
            self.lanes = plan_lanes(self.ctx, self.consumers)
            try:
                async with anyio.create_task_group() as tg:
                    for lane in self.lanes:
                        tg.start_soon(lane.run)
            except* Replan as moved:
                self.replans += 1
                log.info("queues moved between nodes (%s); planning the reads again",
                         moved.exceptions[0])  # fmt: skip
                await anyio.lowlevel.checkpoint()

    async def _shutdown_flush(self) -> None:
        try:
            await self.writer.flush()
            for consumer in self.consumers:
                await consumer.release_own_pending()
            await drop_empty_consumers(self.ctx, self._own_consumers())
        except Exception as exc:
            log.warning("could not flush at shutdown (%r); unacknowledged entries stay pending",
                        exc)  # fmt: skip
        await self.writer.close()
        for consumer in self.consumers:
            consumer.handling.close()

    def _own_consumers(self) -> list[tuple[str, str, str]]:
        """(stream, group, consumer) of every source: a drained worker leaves no empty consumer."""
        return [(s.stream, c.group, c.name) for c in self.consumers for s in c.sources]


async def declare_all(ctx: Context, consumers: list[PushConsumer]) -> None:
    """Declare every consumer's group on its topic's queues and retry streams, batched."""
    infos = await declare_groups(
        ctx, [(c.topic, c.group, c.spec.start, True, None) for c in consumers]
    )
    for consumer, info in zip(consumers, infos, strict=True):
        consumer.add_queues(info.queues)
