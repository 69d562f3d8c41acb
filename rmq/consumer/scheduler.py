"""The scheduler: one loop per app that moves due delayed messages into their queues and due
retries into their group's retry stream, with the `promote` script, whatever the number of topics.

It knows every schedule (sorted set) the app serves: each queue's `:delay` and, for each
concurrently consumed group, its `:retry:<group>`, and when each is next due. It sleeps until the
soonest of them, then promotes only the schedules that are due, all in one round trip (one per
Redis node); each reply says when that schedule is next due. A schedule found empty costs nothing
until something is scheduled on it: the scripts that schedule (`schedule`, `retry`, `commit`)
publish the schedule's key on `<ns>:wake:<topic>` when they put a member in front of it, and the
scheduler, subscribed once to `<ns>:wake:*`, marks that schedule due.

Rounds are at least a pause apart, so messages due at a high rate move in batches: a promote
call costs Redis about 17 us plus 5 us per message, so one message per call would cost 22 us
each, four about 9. The pause adapts between `promote_min_sleep` (2 ms) and `_MAX_PAUSE` (6 ms):
it grows while calls move fewer than `_BATCH_GOAL` messages each and shrinks while they move
more, so a low rate pays a few ms of lateness and a high rate none.

Lost wake-ups (the subscription dropped, Redis restarted) cannot lose anything, only delay it:
after a reconnect every schedule is swept, and while healthy a sweep runs every
`promote_max_sleep` * 30 seconds anyway (every `promote_max_sleep` while unsubscribed).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time

import anyio
from anyio.abc import TaskStatus
from redis.asyncio.client import PubSub

from ..calls import Call, PromoteReply
from ..connection import Backoff, is_transient
from ..context import Context
from ..router import WireSet

__all__ = ["Scheduler"]

log = logging.getLogger("rmq.scheduler")

_SWEEP_FACTOR = 30
"""A healthy subscription's full sweep runs every `promote_max_sleep` times this."""
_CHUNK = 2000
"""Most promote calls in one round trip."""
_BATCH_GOAL = 4
"""Messages per promote call the pause aims at."""
_MAX_PAUSE = 0.006
"""Longest pause between rounds (it bounds the lateness it adds)."""


class _Schedule:
    __slots__ = ("due", "group", "key", "queue_id", "topic")

    def __init__(self, key: str, topic: str, queue_id: int, group: str | None) -> None:
        self.key = key
        self.topic = topic
        self.queue_id = queue_id
        self.group = group
        self.due = 0.0
        """Monotonic time it is next due (inf: empty, until a wake-up)."""


class Scheduler:
    """Promotes the delayed messages of `topics` and the retries of each topic's `groups`."""

    def __init__(self, ctx: Context, topics: dict[str, list[str]]) -> None:
        self.ctx = ctx
        self.topics = topics
        self.promoted = 0
        self.rounds = 0
        self.calls = 0
        self.pause = ctx.settings.promote_min_sleep
        """The pause between rounds now (adapts to messages per call)."""
        self._schedules: dict[str, _Schedule] = {}
        self._heap: list[tuple[float, str]] = []
        self._woken = asyncio.Event()
        self._subscribed = False
        self._pubsub: PubSub | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Promote until cancelled (started once the schedules are known)."""
        settings = self.ctx.settings
        await self.load()
        wire = self.ctx.conn.wires()
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._listen)
                while True:
                    try:
                        await self.promote_due(wire)
                    except Exception as exc:
                        level = logging.WARNING if is_transient(exc) else logging.ERROR
                        log.log(level, "promoting failed: %r", exc)
                        await asyncio.sleep(backoff.next_delay())
                        continue
                    backoff.reset()
                    await self._sleep()
        finally:
            with anyio.CancelScope(shield=True):
                await wire.close()
                await self._unsubscribe()

    async def load(self) -> None:
        """Every schedule of the served topics (topics not created yet get created)."""
        keys = self.ctx.calls
        for topic, groups in self.topics.items():
            info = await self.ctx.topics.ensure(topic)
            for queue_id in range(info.queues):
                queue = keys.queue(topic, queue_id)
                self._add(_Schedule(queue.delay, topic, queue_id, None))
                for group in groups:
                    self._add(_Schedule(queue.retry(group), topic, queue_id, group))

    def _add(self, schedule: _Schedule) -> None:
        self._schedules[schedule.key] = schedule
        heapq.heappush(self._heap, (schedule.due, schedule.key))

    def mark_due(self, key: str) -> bool:
        """A schedule is due now (a wake-up named it); False when it is not one of ours."""
        schedule = self._schedules.get(key)
        if schedule is None:
            return False
        if schedule.due > time.monotonic():
            schedule.due = 0.0
            heapq.heappush(self._heap, (0.0, key))
        self._woken.set()
        return True

    def sweep(self) -> None:
        """Every schedule is due now."""
        for schedule in self._schedules.values():
            schedule.due = 0.0
        self._heap = [(0.0, key) for key in self._schedules]
        self._woken.set()

    # ------------------------------------------------------------------ promoting

    async def promote_due(self, wire: WireSet) -> int:
        """One round of promotion: every schedule due now, in one round trip per chunk.
        Returns how many messages moved."""
        now = time.monotonic()
        due: list[_Schedule] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            schedule = self._schedules[key]
            if schedule.due != at or (due and due[-1] is schedule):
                continue  # a stale heap entry (it was rescheduled since)
            schedule.due = math.inf
            due.append(schedule)
        if not due:
            return 0
        self.rounds += 1
        moved = 0
        limit = self.ctx.settings.promote_batch
        calls = self.ctx.calls
        timeout = self.ctx.settings.socket_timeout
        try:
            for start in range(0, len(due), _CHUNK):
                chunk = due[start : start + _CHUNK]
                promotes: list[Call[PromoteReply]] = [
                    calls.promote_delayed(s.topic, s.queue_id, limit)
                    if s.group is None
                    else calls.promote_retries(s.topic, s.queue_id, s.group, limit)
                    for s in chunk
                ]
                replies = await wire.execute([c.command for c in promotes], timeout)
                now = time.monotonic()
                for schedule, call, reply in zip(chunk, promotes, replies, strict=True):
                    if isinstance(reply, BaseException):
                        self._reschedule(schedule, now)
                        if is_transient(reply):
                            raise reply
                    result = call.result(reply)  # raises the error reply as an rmq error
                    moved += result.moved
                    if result.moved >= limit:
                        self._reschedule(schedule, now)  # more were due than one call moves
                    elif result.wait_ms >= 0:
                        self._reschedule(schedule, now + result.wait_ms / 1000)
        except BaseException:
            now = time.monotonic()
            for schedule in due:
                if schedule.due == math.inf:
                    self._reschedule(schedule, now)
            raise
        self.promoted += moved
        self.calls += len(due)
        if moved:
            self._adapt(moved / len(due))
        return moved

    def _adapt(self, per_call: float) -> None:
        low = self.ctx.settings.promote_min_sleep
        if per_call < _BATCH_GOAL:
            self.pause = min(max(self.pause, low) * 1.5, max(_MAX_PAUSE, low))
        else:
            self.pause = max(self.pause / 1.5, low)

    def _reschedule(self, schedule: _Schedule, at: float) -> None:
        if at < schedule.due:
            schedule.due = at
            heapq.heappush(self._heap, (at, schedule.key))

    async def _sleep(self) -> None:
        """Until the soonest schedule is due (at least `promote_min_sleep`), a wake-up, or the
        next sweep."""
        settings = self.ctx.settings
        heap = self._heap
        longest = settings.promote_max_sleep * (_SWEEP_FACTOR if self._subscribed else 1)
        wait = longest
        if heap:
            wait = min(wait, heap[0][0] - time.monotonic())
        wait = max(wait, self.pause)
        self._woken.clear()
        with anyio.move_on_after(wait) as scope:
            await self._woken.wait()
        if scope.cancelled_caught and wait >= longest:
            self.sweep()  # nothing was due for a long while: a safety sweep
        if not scope.cancelled_caught:
            await asyncio.sleep(self.pause)  # let wake-ups coalesce

    # ------------------------------------------------------------------ wake-ups

    async def _listen(self) -> None:
        """Subscribe to `<ns>:wake:*` and mark the schedules named there due (forever)."""
        settings = self.ctx.settings
        backoff = Backoff(settings.backoff_base, max(settings.backoff_cap, 1.0))
        pattern = self.ctx.keys.wake("*")
        while True:
            try:
                pubsub = self.ctx.conn.readers.pubsub()
                self._pubsub = pubsub
                await pubsub.psubscribe(pattern)
                self._subscribed = True
                self.sweep()  # whatever was scheduled while unsubscribed
                backoff.reset()
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=settings.promote_max_sleep
                    )
                    if message is not None and message.get("type") == "pmessage":
                        data = message["data"]
                        self.mark_due(data.decode() if isinstance(data, bytes) else str(data))
            except Exception as exc:
                self._subscribed = False
                log.debug("wake-up subscription failed (%r); polling meanwhile", exc)
                await self._unsubscribe()
                await asyncio.sleep(backoff.next_delay())

    async def _unsubscribe(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed = False
        if pubsub is not None:
            try:
                await asyncio.shield(pubsub.aclose())
            except Exception as exc:
                log.debug("closing the wake-up subscription failed: %r", exc)
