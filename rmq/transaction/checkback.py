"""The check-back: asks a producer group's checker about half messages nobody resolved.

A `CheckBack` runs in every live process that can answer for the group: a worker with
`@app.transaction_checker(group=...)` (run by `App.run`) and an open app whose producer was
created with `checker=`. Each pass reads the topics the group sent transactional messages to
(`<ns>:ptopics:<group>`), runs `check_claim` on every queue of those topics in one round trip,
asks the checker about each claimed message (at most `CONCURRENCY` at once) and commits or rolls
back as it answers; UNKNOWN, an exception or no answer within half the check interval leave the
message for the next check. Claiming is a script that pushes the next check one interval ahead,
so however many checkers run, each message is asked about by one of them at a time.

The loop sleeps until the next half message is due (the script says when), at most `MAX_SLEEP`
seconds (or the check immunity, if shorter), so a new half message is never checked much later
than it is due.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .. import metrics
from ..calls import ClaimedHalf
from ..codec import decode_fields
from ..connection import Backoff, is_transient
from ..context import Context
from ..errors import DecodeError, TransactionError
from ..logging import fields
from ..message import Message
from ..router import WireSet
from .local import decide
from .store import HalfStore
from .types import TransactionChecker, TransactionState

__all__ = ["CLAIM_BATCH", "CONCURRENCY", "MAX_SLEEP", "CheckBack"]

log = logging.getLogger("rmq.transaction")

CLAIM_BATCH = 64
"""The most half messages one check_claim call claims (or discards) on one queue."""
CONCURRENCY = 16
"""The most checker calls one CheckBack runs at once."""
MAX_SLEEP = 1.0


class CheckBack:
    """Answers the check-backs of producer group `group` with `checker` until cancelled."""

    def __init__(self, ctx: Context, group: str, checker: TransactionChecker) -> None:
        self.ctx = ctx
        self.group = group
        self.checker = checker
        self.store = HalfStore(ctx, group)
        self.checked = 0
        self._limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check until cancelled; errors are logged and retried with backoff."""
        settings = self.ctx.settings
        wire = self.ctx.conn.wires()
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        task_status.started()
        try:
            while True:
                try:
                    wait = await self.check_once(wire)
                except Exception as exc:
                    level = logging.WARNING if is_transient(exc) else logging.ERROR
                    log.log(level, "checking transactions failed: %r", exc,
                            extra={"group": self.group})  # fmt: skip
                    await anyio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                await anyio.sleep(wait)
        finally:
            with anyio.CancelScope(shield=True):
                await wire.close()

    async def check_once(self, wire: WireSet) -> float:
        """Claim and resolve what is due on every queue; return the seconds until more is due."""
        ctx = self.ctx
        settings = ctx.settings
        sleep = min(MAX_SLEEP, settings.transaction_check_immunity)
        queues: list[tuple[str, int]] = []
        for raw in sorted(await ctx.conn.commands.smembers(ctx.keys.producer_topics(self.group))):
            topic = raw.decode() if isinstance(raw, bytes) else str(raw)
            info = ctx.topics.cached(topic) or await ctx.topics.get(topic)
            if info is not None:
                queues += [(topic, q) for q in range(info.queues)]
        if not queues:
            return sleep
        calls = [self.store.claim(t, q, CLAIM_BATCH) for t, q in queues]
        replies = await wire.execute([c.command for c in calls], settings.socket_timeout)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        async with anyio.create_task_group() as tg:
            for (topic, queue_id), call, reply in zip(queues, calls, replies, strict=True):
                claim = call.result(reply)
                if claim.discarded:
                    metrics.transactions(topic, "discarded", len(claim.discarded))
                    log.warning(
                        "%d half message(s) checked %d times without an answer: rolled back and "
                        "kept as discarded (rmq transaction discarded): %s",
                        len(claim.discarded), settings.transaction_max_checks,
                        ", ".join(claim.discarded),
                        extra=fields(topic=topic, queue=queue_id, group=self.group),
                    )  # fmt: skip
                for claimed in claim.claimed:
                    tg.start_soon(self._check, topic, queue_id, claimed)
                if claim.wait_ms >= 0:
                    sleep = min(sleep, claim.wait_ms / 1000)
        return sleep

    async def _check(self, topic: str, queue_id: int, claimed: ClaimedHalf) -> None:
        where = fields(topic=topic, queue=queue_id, msg_id=claimed.msg_id, group=self.group)
        async with self._limiter:
            self.checked += 1
            state = await self._ask(topic, queue_id, claimed, where)
        try:
            if state is TransactionState.COMMIT:
                await self.store.commit(topic, queue_id, [claimed.msg_id])
            elif state is TransactionState.ROLLBACK:
                await self.store.rollback(topic, queue_id, [claimed.msg_id])
            else:
                metrics.transactions(topic, "unknown")
        except TransactionError as exc:  # resolved meanwhile by its producer or another checker
            log.info("check-back: %s", exc, extra=where)
        except Exception as exc:
            log.warning("check-back answered %s, which failed: %r", state, exc, extra=where)

    async def _ask(
        self, topic: str, queue_id: int, claimed: ClaimedHalf, where: dict[str, Any]
    ) -> TransactionState:
        """The checker's answer; UNKNOWN when it raised or took longer than half an interval."""
        try:
            msg = _message(topic, queue_id, self.group, claimed)
        except DecodeError as exc:
            log.error("check-back: the half message does not decode: %s", exc, extra=where)
            return TransactionState.UNKNOWN
        timeout = self.ctx.settings.transaction_check_interval / 2
        try:
            state = await decide(self.checker, (msg,), timeout, "a transaction checker")
        except Exception:
            log.exception("the transaction checker raised", extra=where)
            return TransactionState.UNKNOWN
        if state is None:
            log.warning("the transaction checker took over %.3gs: asked again later", timeout,
                        extra=where)  # fmt: skip
            return TransactionState.UNKNOWN
        return state


def _message(topic: str, queue_id: int, group: str, claimed: ClaimedHalf) -> Message:
    """The half message as the checker sees it: `delivery_count` is the check number."""
    entry: Any = decode_fields("", claimed.fields)
    return Message._received(
        entry.body, entry.tag, entry.keys, entry.properties, entry.msg_id, topic, queue_id, "",
        group, "", claimed.checks,
    )  # fmt: skip
