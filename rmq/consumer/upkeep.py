"""Upkeep of every push consumer of an app, in one loop: keeping held entries from being claimed,
claiming the entries of consumers that died, and removing long-gone consumers.

- **Held entries.** An entry a handler is still working on has its idle time reset (the
  `set_idle` script, owner checked) every third of the visibility timeout, so nobody claims it.
- **Claims.** Every `claim_interval` the loop looks at the streams that are due: `XPENDING`
  (summary) tells whether other consumers hold entries there. A stream where nobody else holds
  anything cannot have a claimable entry for a whole visibility timeout (an entry must sit idle
  that long first), so it is looked at again only then: idle topics cost a command per stream per
  visibility timeout. Where others hold entries, `XAUTOCLAIM` takes those idle past the
  visibility timeout, up to `CLAIM_BATCH` per call (about a millisecond of Redis time), and while
  calls come back full it claims again at once, as long as the consumer has room: a dead worker's
  backlog comes back at the speed handlers take it, never starving new messages, which the lanes
  read meanwhile.
- **Reaping.** Every `REAP_INTERVAL`, consumers idle for an hour (or ten visibility timeouts)
  that own nothing are removed from the groups.

Everything is pipelined over the app's connections to each node, whatever the number of topics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import anyio

from ..connection import is_transient
from ..context import Context
from ..logging import fields
from ..router import WireSet
from .push import PushConsumer, Source

__all__ = ["CLAIM_BATCH", "REAP_INTERVAL", "Upkeep"]

log = logging.getLogger("rmq.consumer")

CLAIM_BATCH = 500
"""Most entries one XAUTOCLAIM takes."""
REAP_INTERVAL = 600.0
_CHUNK = 2000
"""Most commands one round trip carries."""
_OTHERS = 8
"""Other consumers whose oldest pending entry tells when the next one becomes claimable."""
_AFTER = 0.005
"""Claim this long after the entry's idle time reaches the visibility timeout."""


class Upkeep:
    """Claims, held-entry refreshes and reaping for `consumers`, until cancelled."""

    def __init__(self, ctx: Context, consumers: list[PushConsumer]) -> None:
        self.ctx = ctx
        self.consumers = consumers
        self.claimed = 0
        self._woken = asyncio.Event()
        self._reaped = time.monotonic()

    def wake(self) -> None:
        """A consumer has room again: claim for it now if it has more to claim."""
        self._woken.set()

    async def run(self) -> None:
        interval = self.ctx.settings.claim_interval
        wire = self.ctx.conn.wires()
        try:
            while True:
                more = False
                try:
                    now = time.monotonic()
                    await self._refresh(wire, now)
                    more = await self._claim(wire, now)
                    if now - self._reaped >= REAP_INTERVAL:
                        self._reaped = now
                        await self._reap(wire)
                except Exception as exc:
                    level = logging.WARNING if is_transient(exc) else logging.ERROR
                    log.log(level, "consumer maintenance failed: %r", exc)
                if more:
                    await asyncio.sleep(0)
                    continue
                self._woken.clear()
                soonest = min(
                    (s.next_check for c in self.consumers for s in c.sources), default=math.inf
                )
                with anyio.move_on_after(max(0.0, min(interval, soonest - time.monotonic()))):
                    await self._woken.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await wire.close()

    async def _execute(self, wire: WireSet, commands: list[tuple[Any, ...]]) -> list[Any]:
        timeout = self.ctx.settings.socket_timeout
        replies: list[Any] = []
        for start in range(0, len(commands), _CHUNK):
            replies += await wire.execute(commands[start : start + _CHUNK], timeout)
        return replies

    # ------------------------------------------------------------------ held entries

    async def _refresh(self, wire: WireSet, now: float) -> None:
        """Reset the idle time of entries still being handled, so nobody claims them."""
        calls = self.ctx.calls
        commands = []
        for consumer in self.consumers:
            for stream, stale in consumer.stale_held(now).items():
                call = calls.set_idle(stream, consumer.group, consumer.name, 0, stale)
                commands.append(call.command)
        for reply in await self._execute(wire, commands):
            if isinstance(reply, BaseException):
                raise reply

    # ------------------------------------------------------------------ claims

    async def _claim(self, wire: WireSet, now: float) -> bool:
        """Claim what is claimable on the streams due for a look; True when more is waiting."""
        due: list[Source] = []
        for consumer in self.consumers:
            if consumer.room() <= 0:
                if any(s.claim_more for s in consumer.sources):
                    consumer.starved = True  # it wakes this loop once it settles entries
                continue
            due += [
                s for s in consumer.sources
                # not while a lane still reads the consumer's own pending entries (the ones a
                # claim makes its own would come twice)
                if s.drain is None and (s.claim_more or s.next_check <= now)
            ]  # fmt: skip
        if not due:
            return False
        visibility_of = {c: int(c.visibility * 1000) for c in self.consumers}
        checks = [s for s in due if not s.claim_more]
        summaries = await self._execute(
            wire, [("XPENDING", s.stream, s.consumer.group) for s in checks]
        )
        claim = [s for s in due if s.claim_more]
        for source, summary in zip(checks, summaries, strict=True):
            if isinstance(summary, BaseException):
                if is_transient(summary):
                    raise summary
                source.next_check = now + self.ctx.settings.claim_interval  # (no group yet)
                continue
            if _held_by_others(summary, source.consumer.name):
                claim.append(source)
            else:  # nothing anyone else holds can be claimable before a visibility timeout
                source.next_check = now + source.consumer.visibility
        if not claim:
            return False
        counts = [max(1, min(CLAIM_BATCH, s.consumer.room())) for s in claim]
        commands = [
            ("XAUTOCLAIM", s.stream, s.consumer.group, s.consumer.name, visibility_of[s.consumer],
             s.claim_cursor, "COUNT", count)
            for s, count in zip(claim, counts, strict=True)
        ]  # fmt: skip
        more = False
        waiting: list[Source] = []
        for source, count, reply in zip(claim, counts, await self._execute(wire, commands),
                                        strict=True):  # fmt: skip
            consumer = source.consumer
            if isinstance(reply, BaseException):
                source.claim_more = False
                source.next_check = now + self.ctx.settings.claim_interval
                if is_transient(reply):
                    raise reply
                continue
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            entries = list(reply[1])
            deleted = list(reply[2]) if len(reply) > 2 else []
            source.claim_cursor = cursor
            source.claim_more = cursor != "0-0" or len(entries) >= count
            source.next_check = now + self.ctx.settings.claim_interval
            more = more or source.claim_more
            if not source.claim_more:
                waiting.append(source)  # what others still hold is not idle long enough yet
            if deleted:
                consumer.handling.lost_payloads(source.stream, len(deleted))
            if entries:
                self.claimed += len(entries)
                consumer.handling.reclaimed(len(entries))
                log.info("claimed %d idle entries", len(entries), extra=fields(
                    topic=consumer.topic, group=consumer.group, stream=source.stream))  # fmt: skip
                await consumer.accept(source, entries, redelivered=True)
        if waiting:
            await self._schedule(wire, waiting, now)
        return more

    async def _schedule(self, wire: WireSet, sources: list[Source], now: float) -> None:
        """For streams where others hold entries that are not claimable yet: look again when the
        oldest of them will be (by its idle time), not a whole `claim_interval` later. The oldest
        entry of each other consumer (up to `_OTHERS` of them) tells."""
        summaries = await self._execute(
            wire, [("XPENDING", s.stream, s.consumer.group) for s in sources]
        )
        asks: list[tuple[Source, tuple[Any, ...]]] = []
        for source, summary in zip(sources, summaries, strict=True):
            if isinstance(summary, BaseException) or not int(summary[0] or 0):
                continue
            me = source.consumer.name.encode()
            others = [name for name, _ in summary[3] or () if name != me][:_OTHERS]
            asks += [
                (source, ("XPENDING", source.stream, source.consumer.group, "-", "+", 1, other))
                for other in others
            ]
        if not asks:
            return
        for (source, _), rows in zip(asks, await self._execute(wire, [c for _, c in asks]),
                                     strict=True):  # fmt: skip
            if isinstance(rows, BaseException) or not rows:
                continue
            wait = max(0.0, source.consumer.visibility - int(rows[0][2]) / 1000) + _AFTER
            source.next_check = min(source.next_check, now + wait)

    # ------------------------------------------------------------------ reaping

    async def _reap(self, wire: WireSet) -> None:
        calls = self.ctx.calls
        commands = []
        for consumer in self.consumers:
            min_idle = int(max(3600.0, consumer.visibility * 10) * 1000)
            for source in consumer.sources:
                reap = calls.reap_consumers(source.stream, consumer.group, min_idle, consumer.name)
                commands.append(reap.command)
        await self._execute(wire, commands)


def _held_by_others(summary: Any, me: str) -> bool:
    """Whether an XPENDING summary ([count, min, max, [[consumer, count], ...]]) shows entries
    pending for a consumer other than `me`."""
    total = int(summary[0] or 0)
    if not total:
        return False
    mine = 0
    for name, count in summary[3] or ():
        if (name.decode() if isinstance(name, bytes) else str(name)) == me:
            mine = int(count)
    return total > mine
