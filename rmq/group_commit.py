"""Group commit: the round trips of one producer.

Concurrent sends are coalesced: while one round trip is in flight, new messages queue up, and
the next round trip carries all of them, one `send` (or `schedule`) script call per queue. A lone
caller pays one round trip, sent inline without waking another task.

Failed round trips are retried with backoff inside `send_timeout`. A retry cannot store a message
twice: each producer has a session id, sends at most one chunk per queue per round trip, and retries
a chunk before sending anything else; the `send` script keeps the session's last chunk per queue
(first msg_id and entry id, for `dedup_window`) and answers a retry of a chunk that did land with
the entry ids it already has.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import metrics
from .calls import Call
from .connection import Backoff, is_transient
from .context import Context
from .errors import BrokerError, BrokerUnavailable, ProducerClosed, PublishError
from .message import SendResult, SendStatus
from .outgoing import Encoded
from .router import WireSet
from .wire import Large, Multi

__all__ = ["BatchSink", "GroupCommit", "Pending"]

log = logging.getLogger("rmq.producer")

_LARGE = 64 * 1024
"""A chunk with this many body bytes is packed without copying its bodies (`wire.Large`)."""


class BatchSink:
    """Collects the results of one `send_batch` into one future."""

    __slots__ = ("future", "missing", "results")

    def __init__(self, future: asyncio.Future[list[SendResult]], size: int) -> None:
        self.future = future
        self.results: list[SendResult | None] = [None] * size
        self.missing = size

    def set(self, index: int, result: SendResult) -> None:
        self.results[index] = result
        self.missing -= 1
        if self.missing == 0 and not self.future.done():
            self.future.set_result(self.results)  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Pending:
    """One encoded message waiting for its round trip: where it goes and who waits for it."""

    __slots__ = ("batch", "deadline", "encoded", "index", "queue_id", "sink", "topic")

    def __init__(
        self,
        topic: str,
        encoded: Encoded,
        sink: asyncio.Future[SendResult] | BatchSink | None,
        deadline: float,
        queue_id: int = 0,
        batch: BatchSink | None = None,
        index: int = 0,
    ) -> None:
        self.topic = topic
        self.queue_id = queue_id
        self.encoded = encoded
        self.sink = sink
        self.deadline = deadline
        self.batch = batch
        self.index = index


class GroupCommit:
    """Buffers one producer's messages and stores them in shared round trips."""

    def __init__(self, context: Callable[[], Context]) -> None:
        self._context = context
        self._buffer: list[Pending] = []
        self._flushing = False
        self.outstanding = 0
        """Messages submitted and not yet stored or failed."""
        self._space_waiters: list[asyncio.Future[None]] = []
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._wire: tuple[Context, WireSet] | None = None
        self._session_pid = 0
        self._session_id = ""

    # ------------------------------------------------------------------ submitting

    async def submit(self, ctx: Context, item: Pending) -> SendResult:
        """Store one message and wait for its result (inline when nothing is in flight)."""
        assert isinstance(item.sink, asyncio.Future)
        self.outstanding += 1
        if self._flushing or self._buffer:
            self.enqueue(item)
            return await item.sink
        self._flushing = True
        try:
            await self._store(ctx, [[item]])
        finally:
            self._flushing = False
            if self._buffer:
                self._start_drainer()
            elif self.outstanding == 0:
                self._wake(self._idle_waiters)
        return item.sink.result()

    def add(self, items: list[Pending]) -> None:
        """Count messages as submitted (`enqueue` them once their queue is known)."""
        self.outstanding += len(items)

    def enqueue(self, item: Pending) -> None:
        self._buffer.append(item)
        if not self._flushing:
            self._start_drainer()

    def enqueue_all(self, items: list[Pending]) -> None:
        self._buffer.extend(items)
        if not self._flushing:
            self._start_drainer()

    def track(self, task: asyncio.Task[Any]) -> None:
        """A background task whose end `flush` waits for (a topic lookup, say)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_for_space(self, limit: int) -> None:
        """Wait while `limit` messages or more are outstanding (back-pressure)."""
        while self.outstanding >= limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._space_waiters.append(waiter)
            await waiter

    async def flush(self) -> None:
        """Wait until every message submitted so far is stored or has failed."""
        while self.outstanding or self._background:
            if self._background:
                await asyncio.gather(*list(self._background), return_exceptions=True)
                continue
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    # ------------------------------------------------------------------ round trips

    def _start_drainer(self) -> None:
        self._flushing = True
        self.track(asyncio.get_running_loop().create_task(self._drain()))

    async def _drain(self) -> None:
        try:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                await self._flush(batch)
        finally:
            self._flushing = False
            if self._buffer:  # cancelled mid-way: do not strand what is queued
                self.fail(self._buffer, ProducerClosed("the producer was stopped"))
                self._buffer = []
            if self.outstanding == 0:
                self._wake(self._idle_waiters)

    @property
    def session(self) -> str:
        """This producer's id in dedup records: unique per producer object and process."""
        pid = os.getpid()
        if pid != self._session_pid:
            self._session_pid = pid
            self._session_id = f"{pid:x}-{os.urandom(6).hex()}"
        return self._session_id

    @staticmethod
    def _chunks(items: list[Pending], limit: int) -> list[list[Pending]]:
        """One chunk per queue: a round trip carries at most one chunk per queue (dedup relies on
        it). A queue's chunk holds up to `limit` messages, or one whole batch; the rest waits for
        the next round trip."""
        by_queue: dict[tuple[str, int, bool], list[Pending]] = {}
        leftover: list[Pending] = []
        for item in items:
            delayed = item.encoded.when is not None
            chunk = by_queue.setdefault((item.topic, item.queue_id, delayed), [])
            continues_batch = (
                bool(chunk) and item.batch is not None and item.batch is chunk[-1].batch
            )
            if len(chunk) < limit or continues_batch:
                chunk.append(item)
            else:
                leftover.append(item)
        items[:] = leftover
        return list(by_queue.values())

    def _call(self, ctx: Context, chunk: list[Pending], retry: bool) -> Call[Any]:
        """The `send` (or, for delayed messages, `schedule`) call that stores one chunk."""
        first = chunk[0]
        if first.encoded.when is None:
            values = [v for item in chunk for v in item.encoded.values]
            if not retry and sum(item.encoded.size for item in chunk) >= _LARGE:
                return ctx.calls.send_large(
                    first.topic, first.queue_id, self.session, values, len(chunk)
                )
            return ctx.calls.send(first.topic, first.queue_id, self.session, retry, values)
        values = []
        for item in chunk:
            assert item.encoded.when is not None
            values += item.encoded.when
            values += item.encoded.values
        return ctx.calls.schedule(first.topic, first.queue_id, self.session, retry, values)

    async def _flush(self, items: list[Pending]) -> None:
        """Store `items`, resolving or failing each; one round trip per attempt."""
        try:
            ctx = self._context()
        except Exception as exc:
            self.fail(items, exc)
            return
        pending = list(items)
        try:
            while pending:
                chunks = self._chunks(pending, ctx.settings.max_batch_messages)
                await self._store(ctx, chunks)
        except BaseException:
            self.fail(pending, ProducerClosed("the send was cancelled before it was attempted"))
            raise

    async def _store(self, ctx: Context, chunks: list[list[Pending]]) -> None:
        """Store chunks (at most one per queue), retrying transient failures within the deadline."""
        wire = self._wire_for(ctx)
        try:
            await self._attempts(ctx, wire, chunks)
        except BaseException:
            cancelled = PublishError("the send was cancelled; the message may or may not be stored")
            for chunk in chunks:
                self.fail(chunk, cancelled)
            raise

    async def _attempts(self, ctx: Context, wire: WireSet, chunks: list[list[Pending]]) -> None:
        """Round trips until every chunk is resolved or failed; `chunks` always holds the rest."""
        settings = ctx.settings
        backoff: Backoff | None = None
        retrying = False
        while chunks:
            calls = [self._call(ctx, chunk, retrying) for chunk in chunks]
            commands = [
                Large(call.command)
                if call.command.__class__ is not Multi
                and sum(i.encoded.size for i in chunk) >= _LARGE
                else call.command
                for call, chunk in zip(calls, chunks, strict=True)
            ]
            deadline = min(chunk[0].deadline for chunk in chunks)
            started = time.perf_counter()
            try:
                results = await wire.execute(commands, max(0.001, deadline - time.monotonic()))
            except Exception as exc:
                if not is_transient(exc):
                    for chunk in chunks:
                        self.fail(chunk, BrokerError(f"send failed: {exc!r}"))
                    return
                results = [exc] * len(chunks)
            retry: list[list[Pending]] = []
            last_error: BaseException | None = None
            elapsed = time.perf_counter() - started
            for chunk, call, result in zip(chunks, calls, results, strict=True):
                if isinstance(result, BaseException) and is_transient(result):
                    retry.append(chunk)
                    last_error = result
                    continue
                try:
                    stored = call.result(result)
                except Exception as exc:
                    self.fail(chunk, exc)
                    continue
                self._resolve(chunk, stored)
                sizes = [item.encoded.size for item in chunk]
                metrics.published(chunk[0].topic, "ok", len(chunk), elapsed, sizes=sizes)
            if not retry:
                return
            if backoff is None:
                backoff = Backoff(settings.backoff_base, settings.backoff_cap)
            delay = backoff.next_delay()
            deadline = min(chunk[0].deadline for chunk in retry)
            if backoff.attempt > settings.send_retries or time.monotonic() + delay >= deadline:
                error = BrokerUnavailable(
                    f"send to {ctx.conn.url} failed after {backoff.attempt} attempt(s) within "
                    f"{settings.send_timeout}s; the message may or may not be stored: "
                    f"{last_error!r}"
                )
                error.__cause__ = last_error
                chunks.clear()
                for chunk in retry:
                    self.fail(chunk, error)
                return
            chunks[:] = retry
            log.debug("send failed (%r), retrying in %.3fs", last_error, delay)
            await asyncio.sleep(delay)
            retrying = True

    def _wire_for(self, ctx: Context) -> WireSet:
        """The producer's own connection (one flush at a time uses it), per open context."""
        if self._wire is None or self._wire[0] is not ctx:
            self._wire = (ctx, ctx.conn.wires())
        return self._wire[1]

    # ------------------------------------------------------------------ outcomes

    def _resolve(self, chunk: list[Pending], stored: list[Any]) -> None:
        """Resolve each waiting caller: `stored` has an entry id (a `send`) or an (entry id or
        "", due ms) pair (a `schedule`) per message."""
        delayed = chunk[0].encoded.when is not None
        for item, where in zip(chunk, stored, strict=True):
            sink = item.sink
            if sink is None:
                continue
            if delayed:
                offset, due = where
                deliver_at = None if offset else datetime.fromtimestamp(due / 1000, UTC)
            else:
                offset, deliver_at = where, None
            result = SendResult(SendStatus.SEND_OK, item.encoded.values[0], item.topic,
                                item.queue_id, offset, deliver_at)  # fmt: skip
            if isinstance(sink, BatchSink):
                sink.set(item.index, result)
            elif not sink.done():
                sink.set_result(result)
        self._done(len(chunk))

    def fail(self, chunk: list[Pending], exc: BaseException) -> None:
        """Fail these submitted messages (their senders get `exc`)."""
        per_topic: dict[str, int] = {}
        for item in chunk:
            per_topic[item.topic] = per_topic.get(item.topic, 0) + 1
        for topic, count in per_topic.items():
            metrics.published(topic, "error", count)
        for item in chunk:
            sink = item.sink
            if sink is None:
                log.error("one-way send failed: %s", exc, extra={"topic": item.topic})
            elif isinstance(sink, BatchSink):
                sink.fail(exc)
            elif not sink.done():
                sink.set_exception(exc)
        self._done(len(chunk))

    def _done(self, count: int) -> None:
        self.outstanding -= count
        if self._space_waiters:
            self._wake(self._space_waiters)
        if self.outstanding == 0 and self._idle_waiters and not self._flushing:
            self._wake(self._idle_waiters)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()
