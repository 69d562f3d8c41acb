"""Running a handler and deciding what becomes of its message: the one place that does it.

Every push runtime (concurrent, orderly, broadcasting) hands each message to `Handling.handle`,
which calls the handler (an async one on the loop, a plain one in one of at most `concurrency`
threads: `rmq.consumer.threads`) under the consumer's `timeout`, and returns an `Outcome`:

| the handler                                    | outcome                                      |
| ---------------------------------------------- | -------------------------------------------- |
| returns                                        | ACK                                          |
| raises `rmq.Skip`                              | SKIP: acknowledged without handling          |
| raises `rmq.Reject(reason)`                    | DEAD_LETTER at once (reason `rejected`)      |
| raises `rmq.Retry(delay=d)`                    | RETRY after `d`, while retries are left      |
| raises anything else, runs past `timeout`, or  | RETRY after the mode's delay, while retries  |
| calls `sys.exit()`                             | are left                                     |
| ... and no retries are left                    | DEAD_LETTER (reason `max_retries`)           |

The modes differ only where the README says they do, in how a retry happens (a `RetryRule`):
concurrently, through the retry schedule (`retry=`), `max_retries` times; orderly, in place after
`suspend`, `max_retries` times; broadcasting, in place after `suspend`, `broadcast_retries` times.
The entries set aside before any handler runs (undecodable, delivered too often) get their dead-
letter records here too, and every counter and metric of a consumer is bumped here, once.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from .. import metrics
from ..dlq import DeadLetterInfo, describe_error
from ..errors import Reject, Retry, Skip
from ..ids import entry_ms
from ..logging import fields
from ..message import Message
from ..retry import seconds
from ..tracing import hooks as tracing
from .spec import ConsumerSpec
from .stats import ConsumerStats
from .threads import HandlerThreads

__all__ = ["ACKED", "SKIPPED", "Handling", "Outcome", "RetryRule", "Verdict"]

log = logging.getLogger("rmq.consumer")

_Result = metrics.ConsumeResult


class Verdict(enum.Enum):
    """What to do with a handled message."""

    ACK = "ack"
    SKIP = "skip"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A verdict, with the delay of a retry or the record of a dead letter."""

    verdict: Verdict
    delay: float = 0.0
    """RETRY: seconds until the next attempt."""
    dead: DeadLetterInfo | None = None
    """DEAD_LETTER: why (becomes the dead-letter entry's metadata)."""


ACKED = Outcome(Verdict.ACK)
SKIPPED = Outcome(Verdict.SKIP)


@dataclass(frozen=True, slots=True)
class RetryRule:
    """How a consumer retries: at most `limit` times, after `delay(attempt)` seconds (attempt 1
    is the first retry); `in_place` retries keep the message (orderly, broadcasting)."""

    limit: int
    delay: Callable[[int], float]
    in_place: bool

    @classmethod
    def of(cls, spec: ConsumerSpec) -> RetryRule:
        if spec.model == "broadcasting":
            return cls(spec.broadcast_retries, lambda _attempt: spec.suspend, in_place=True)
        if spec.mode == "orderly":
            return cls(spec.max_retries, lambda _attempt: spec.suspend, in_place=True)
        return cls(spec.max_retries, spec.policy.delay, in_place=False)


class Handling:
    """Runs the handler of one consumer registration and keeps its counters and metrics."""

    def __init__(
        self,
        spec: ConsumerSpec,
        concurrency: int,
        *,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.topic = spec.topic
        self.group = spec.group
        self.rule = RetryRule.of(spec)
        self.stats = ConsumerStats()
        self.meter = metrics.ConsumerMeter(spec.topic, spec.group)
        self.threads = HandlerThreads(concurrency)
        self._extra = extra or {}
        self._handler = spec.handler
        self._is_async = spec.is_async
        self._timeout = spec.timeout
        self._inline = spec.is_async and spec.timeout is None
        if tracing.on_handling is not None:  # rmq.tracing: wraps handle() in CONSUMER spans
            tracing.on_handling(self)

    def describe(self, key: str, value: str) -> None:
        """Add `key: value` to every dead-letter record from now on (e.g. a broadcast instance)."""
        self._extra[key] = value

    # ------------------------------------------------------------------ handling

    async def handle(self, msg: Message) -> Outcome:
        """Run the handler on `msg` once and decide its outcome (cancellation propagates)."""
        meter = self.meter
        meter.started(msg._born_ms or entry_ms(msg.offset))
        started = time.perf_counter()
        try:
            if self._inline:
                await self._handler(msg)  # type: ignore[misc]
            elif self._is_async:
                with anyio.fail_after(self._timeout):
                    await self._handler(msg)  # type: ignore[misc]
            else:
                await self.threads.call(self._handler, msg, self._timeout)
        except Skip:
            self.stats.skipped += 1
            meter.finished(_Result.SKIP, time.perf_counter() - started)
            return SKIPPED
        except Reject as signal:
            self.stats.failed += 1
            meter.finished(_Result.REJECT, time.perf_counter() - started)
            return Outcome(
                Verdict.DEAD_LETTER, dead=self.dead_letter_info(msg, "rejected", signal.reason)
            )
        except (Exception, SystemExit) as exc:
            self.stats.failed += 1
            outcome = self._failed(msg, exc)
            result = _Result.RETRY if outcome.verdict is Verdict.RETRY else _Result.DEAD_LETTER
            meter.finished(result, time.perf_counter() - started)
            return outcome
        self.stats.handled += 1
        meter.acked(time.perf_counter() - started)
        return ACKED

    async def settle_in_place(self, msg: Message, still_ours: Callable[[], bool]) -> Outcome | None:
        """Handle `msg` until it is not to be retried (orderly, broadcasting): each retry waits
        its delay in place, counted in `msg.reconsume_times`. None when `still_ours()` turns
        false during a wait: the message is left where it is (pending for its next owner)."""
        while True:
            outcome = await self.handle(msg)
            self.meter.flush()
            if outcome.verdict is not Verdict.RETRY:
                return outcome
            if msg._first_failure_ms is None:
                msg._first_failure_ms = int(time.time() * 1000)
            msg.reconsume_times += 1
            self.retried()
            await anyio.sleep(outcome.delay)
            if not still_ours():
                return None

    def _failed(self, msg: Message, exc: BaseException) -> Outcome:
        """Retry after the rule's delay (or the handler's `Retry(delay=)`), or dead-letter."""
        attempt = msg.reconsume_times + 1
        where = f"{msg.topic}[{msg.queue_id}]@{msg.offset} (msg_id {msg.msg_id})"
        name = self.spec.name
        if isinstance(exc, SystemExit):
            exc = RuntimeError(f"the handler called sys.exit({exc.code!r})")
        elif isinstance(exc, TimeoutError) and self._timeout is not None:
            exc = TimeoutError(f"handler exceeded its timeout of {self._timeout:g}s")
        if attempt > self.rule.limit:
            log.error("%s: %s failed for the last time (%d retries)", name, where,
                      msg.reconsume_times, exc_info=exc)  # fmt: skip
            return Outcome(Verdict.DEAD_LETTER, dead=self.dead_letter_info(msg, "max_retries", exc))
        delay = self._delay(exc, attempt)
        how = "in place " if self.rule.in_place else ""
        if isinstance(exc, Retry):
            log.info("%s: %s asked for retry %d %sin %.3gs", name, where, attempt, how, delay)
        else:
            log.warning("%s: %s failed; retry %d %sin %.3gs", name, where, attempt, how, delay,
                        exc_info=exc)  # fmt: skip
        return Outcome(Verdict.RETRY, delay=delay)

    def _delay(self, exc: BaseException, attempt: int) -> float:
        if isinstance(exc, Retry) and exc.delay is not None:
            try:
                return seconds(exc.delay, "Retry(delay=...)")
            except ValueError as bad:
                log.warning("%s; using the retry policy's delay", bad,
                            extra=fields(topic=self.topic, group=self.group))  # fmt: skip
        return self.rule.delay(attempt)

    # ------------------------------------------------------------------ dead letters

    def dead_letter_info(
        self, msg: Message, reason: str, error: BaseException | str | None
    ) -> DeadLetterInfo:
        """The dead-letter record of a message that was handled `reconsume_times + 1` times."""
        text = error if isinstance(error, str) else describe_error(error)
        return DeadLetterInfo(
            reason, text, attempts=msg.reconsume_times + 1,
            first_failure_ms=msg._first_failure_ms, origin=msg._origin, extra=dict(self._extra),
        )  # fmt: skip

    def undecodable(self, error: BaseException) -> DeadLetterInfo:
        """The record of an entry that does not decode (the handler never sees it)."""
        return DeadLetterInfo("undecodable", describe_error(error), extra=dict(self._extra))

    def too_many_deliveries(self, count: int) -> DeadLetterInfo:
        """The record of an entry delivered `count` times without an outcome: it keeps killing
        the consumers that take it (the handler does not see it again)."""
        limit = self.spec.max_deliveries
        return DeadLetterInfo(
            "max_deliveries",
            f"delivered {count} times without an outcome (max_deliveries {limit}): it keeps "
            "killing its consumers",
            attempts=count,
        )

    # ------------------------------------------------------------------ what was written

    def set_aside(self, count: int = 1) -> None:
        """Entries dead-lettered before a handler ran (undecodable, delivered too often)."""
        for _ in range(count):
            self.meter.finished(_Result.DEAD_LETTER)

    def received(self, count: int) -> None:
        self.stats.received += count

    def filtered(self, count: int = 1) -> None:
        """Entries acknowledged without a handler because the filter does not match."""
        self.stats.filtered += count
        metrics.filtered(self.topic, self.group, count)

    def acked(self, count: int) -> None:
        self.stats.acked += count

    def retried(self, count: int = 1) -> None:
        self.stats.retried += count
        metrics.retried(self.topic, self.group, count)

    def dead_lettered(self, where: str, info: DeadLetterInfo) -> None:
        self.stats.dead_lettered += 1
        metrics.dead_lettered(self.topic, self.group, info.reason)
        log.warning("dead-lettered (%s): %s", info.reason, info.error,
                    extra=fields(topic=self.topic, group=self.group, stream=where))  # fmt: skip

    def reclaimed(self, count: int) -> None:
        self.stats.reclaimed += count
        metrics.reclaimed(self.topic, self.group, count)

    def lost_payloads(self, where: str, count: int) -> None:
        """Pending entries whose payload was trimmed or deleted: acknowledged, counted."""
        self.stats.trimmed += count
        log.warning("%d pending entries lost their payload (trimmed or deleted)", count,
                    extra=fields(topic=self.topic, group=self.group, stream=where))  # fmt: skip

    def close(self) -> None:
        self.threads.close()
