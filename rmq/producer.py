"""Producer: sync, async, one-way and batch sends; round-robin, sharding-key or custom selection.

Concurrent sends are coalesced (group commit): while one round trip is in flight, new messages
queue up, and the next round trip carries all of them, one `send` script call per queue. A lone
caller pays one round trip and nothing else.

Failed round trips are retried with backoff inside `send_timeout`. A retry cannot store a message
twice: each producer has a session id, sends at most one chunk per queue per round trip, and retries
a chunk before sending anything else; the `send` script keeps the session's last chunk per queue
(first msg_id and entry id, for `dedup_window`) and answers a retry of a chunk that did land with
the entry ids it already has.

Transactional sends (`send_in_transaction`, `transaction()`) live in `rmq.transaction`; the
producer only encodes their messages and chooses their queues, as for any send.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import ResponseError

from . import metrics
from .codec import encode_body, encode_properties
from .connection import Backoff, broker_error, is_transient
from .context import Context
from .errors import BrokerError, BrokerUnavailable, ConfigError, ProducerClosed, PublishError
from .ids import new_msg_id
from .message import Message, SendResult, SendStatus
from .names import validate_group, validate_keys, validate_properties, validate_tag
from .retry import delay_level_seconds, seconds
from .router import WireSet
from .scripts import raise_script_error
from .topics import TopicInfo
from .transaction.local import Transaction, send_in_transaction
from .transaction.store import HalfStore
from .transaction.types import (
    HalfMessage,
    LocalTransaction,
    TransactionChecker,
    TransactionSendResult,
)

__all__ = ["ErrorCallback", "Producer", "QueueSelector", "SendCallback"]

log = logging.getLogger("rmq.producer")

QueueSelector = Callable[[int, Message], int]
"""`selector(queue_count, message) -> queue_id`, RocketMQ's MessageQueueSelector."""
SendCallback = Callable[[SendResult], object]
ErrorCallback = Callable[[BaseException], object]
_MessageParts = tuple[Any, str | None, Sequence[str] | None, dict[str, str] | None]
_When = tuple[str, int]
"""("after", delay ms) or ("at", due epoch ms): when a delayed message becomes visible."""


class _BatchSink:
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


class _Outgoing:
    """One message on its way to Redis: the 6 script values, where it goes, who waits for it."""

    __slots__ = ("args", "batch", "deadline", "index", "queue_id", "sink", "topic", "when")

    def __init__(
        self,
        topic: str,
        args: list[Any],
        sink: asyncio.Future[SendResult] | _BatchSink | None,
        deadline: float,
        queue_id: int = 0,
        batch: _BatchSink | None = None,
        index: int = 0,
        when: _When | None = None,
    ) -> None:
        self.topic = topic
        self.queue_id = queue_id
        self.args = args
        self.sink = sink
        self.deadline = deadline
        self.batch = batch
        self.index = index
        self.when = when


class Producer:
    """Sends messages; get one from `app.producer(group=...)` (`app.send` uses a default one)."""

    def __init__(
        self,
        context: Callable[[], Context],
        group: str | None = None,
        checker: TransactionChecker | None = None,
    ) -> None:
        if group is not None:
            validate_group(group)
        if checker is not None:
            if group is None:
                raise ConfigError("a transaction checker needs a producer group: group=...")
            if not callable(checker):
                raise ConfigError(f"checker must be callable, got {checker!r}")
        self.group = group
        self.checker = checker
        self._halves: HalfStore | None = None
        self._context = context
        self._round_robin: dict[str, int] = {}
        self._buffer: list[_Outgoing] = []
        self._flushing = False
        self._outstanding = 0
        self._space_waiters: list[asyncio.Future[None]] = []
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._wire: tuple[Context, WireSet] | None = None
        self._session_pid = 0
        self._session_id = ""
        self._send_keys_cache: tuple[Context | None, str, dict[tuple[str, int], tuple[str, str]]]
        self._send_keys_cache = (None, "", {})

    # ------------------------------------------------------------------ public API

    async def send(
        self,
        topic: str,
        body: Any,
        *,
        tag: str | None = None,
        keys: Sequence[str] | None = None,
        properties: dict[str, str] | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        delay: float | timedelta | None = None,
        deliver_at: datetime | None = None,
        delay_level: int | None = None,
    ) -> SendResult:
        """Send one message and wait until Redis stored it; return where it went.

        With `delay` (seconds or timedelta), `deliver_at` (datetime) or RocketMQ's `delay_level`
        (1..18) the message becomes visible later (see `SendResult.deliver_at`).
        """
        ctx = self._ctx()
        args = self._encode(ctx, body, tag, keys, properties)
        when = _when(ctx, delay, deliver_at, delay_level)
        info = await ctx.topics.ensure(topic)
        if self._outstanding >= ctx.settings.max_pending_sends:
            await self._wait_for_space(ctx)
        queue_id = self._select(info, (body, tag, keys, properties), sharding_key, selector)
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        item = _Outgoing(
            topic, args, future, time.monotonic() + ctx.settings.send_timeout, queue_id, when=when
        )
        self._outstanding += 1
        if not self._flushing and not self._buffer:
            # Nothing in flight: send inline, without waking another task.
            self._flushing = True
            try:
                await self._store(ctx, [[item]])
            finally:
                self._flushing = False
                if self._buffer:
                    self._start_drainer()
                elif self._outstanding == 0:
                    self._wake(self._idle_waiters)
            return future.result()
        self._enqueue(item)
        return await future

    def send_async(
        self,
        topic: str,
        body: Any,
        *,
        tag: str | None = None,
        keys: Sequence[str] | None = None,
        properties: dict[str, str] | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        callback: SendCallback | None = None,
        on_error: ErrorCallback | None = None,
        delay: float | timedelta | None = None,
        deliver_at: datetime | None = None,
        delay_level: int | None = None,
    ) -> asyncio.Future[SendResult]:
        """Send without waiting: returns a future at once; `callback`/`on_error` get the outcome.

        Raises `PublishError` at once when `max_pending_sends` messages are already waiting.
        """
        ctx = self._ctx()
        args = self._encode(ctx, body, tag, keys, properties)
        when = _when(ctx, delay, deliver_at, delay_level)
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        if callback is not None or on_error is not None:
            future.add_done_callback(_callback_adapter(callback, on_error))
        parts = (body, tag, keys, properties)
        self._submit_nowait(ctx, topic, args, future, parts, sharding_key, selector, when)
        return future

    def send_oneway(
        self,
        topic: str,
        body: Any,
        *,
        tag: str | None = None,
        keys: Sequence[str] | None = None,
        properties: dict[str, str] | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        delay: float | timedelta | None = None,
        deliver_at: datetime | None = None,
        delay_level: int | None = None,
    ) -> None:
        """Fire and forget: queue the message for the next round trip; failures are only logged."""
        ctx = self._ctx()
        args = self._encode(ctx, body, tag, keys, properties)
        when = _when(ctx, delay, deliver_at, delay_level)
        parts = (body, tag, keys, properties)
        self._submit_nowait(ctx, topic, args, None, parts, sharding_key, selector, when)

    async def send_batch(
        self,
        topic: str,
        messages: Sequence[Message | Any],
        *,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
    ) -> list[SendResult]:
        """Send messages to one queue in one script call: one round trip, consecutive offsets.

        Items that are not `Message` objects are used as bodies.
        """
        ctx = self._ctx()
        msgs = [m if isinstance(m, Message) else Message(m) for m in messages]
        if not msgs:
            return []
        if len(msgs) > ctx.settings.max_batch_messages:
            raise ConfigError(
                f"a batch holds at most {ctx.settings.max_batch_messages} messages "
                f"(max_batch_messages), got {len(msgs)}"
            )
        encoded = [self._encode(ctx, m.body, m.tag, m.keys, m.properties) for m in msgs]
        info = await ctx.topics.ensure(topic)
        first = msgs[0]
        parts = (first.body, first.tag, first.keys, first.properties)
        queue_id = self._select(info, parts, sharding_key, selector)
        if self._outstanding >= ctx.settings.max_pending_sends:
            await self._wait_for_space(ctx)
        future: asyncio.Future[list[SendResult]] = asyncio.get_running_loop().create_future()
        sink = _BatchSink(future, len(encoded))
        deadline = time.monotonic() + ctx.settings.send_timeout
        items = [
            _Outgoing(topic, args, sink, deadline, queue_id, sink, i)
            for i, args in enumerate(encoded)
        ]
        self._outstanding += len(items)
        self._buffer.extend(items)
        if not self._flushing:
            self._start_drainer()
        return await future

    async def send_in_transaction(
        self,
        topic: str,
        body: Any,
        *,
        execute: LocalTransaction,
        arg: Any = None,
        execute_timeout: float | None = None,
        tag: str | None = None,
        keys: Sequence[str] | None = None,
        properties: dict[str, str] | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        delay: float | timedelta | None = None,
        deliver_at: datetime | None = None,
        delay_level: int | None = None,
    ) -> TransactionSendResult:
        """RocketMQ's sendMessageInTransaction: store a half message, run `execute(msg, arg)`
        (your local transaction; sync or async), then commit or roll back as it returns.

        COMMIT makes the message visible (a delay starts now); ROLLBACK discards it; UNKNOWN (or
        None), an exception (re-raised) or running past `execute_timeout` seconds (default: half
        of `transaction_check_immunity`) leave it for the check-back. The result carries the
        msg_id, where the message went and `local_state`.
        """
        if not callable(execute):
            raise ConfigError(f"execute must be callable, got {execute!r}")
        store = self._half_store()
        limit = execute_timeout
        if limit is None:
            limit = store.ctx.settings.transaction_check_immunity / 2
        elif not (isinstance(limit, int | float) and limit > 0):
            raise ConfigError(f"execute_timeout must be seconds > 0, got {execute_timeout!r}")
        half = await self._half(
            topic, body, tag=tag, keys=keys, properties=properties, sharding_key=sharding_key,
            selector=selector, delay=delay, deliver_at=deliver_at, delay_level=delay_level,
        )  # fmt: skip
        return await send_in_transaction(store, half, execute, arg, limit)

    def transaction(self) -> Transaction:
        """A transaction of one or more messages: `async with producer.transaction() as tx:`.

        `await tx.send(...)` takes the options of `send`; leaving the block normally commits
        every message, an exception rolls them all back. See `rmq.transaction.Transaction`.
        """
        return Transaction(self)

    async def flush(self) -> None:
        """Wait until every message sent so far (including one-way ones) is stored or has failed."""
        while self._outstanding or self._background:
            if self._background:
                await asyncio.gather(*list(self._background), return_exceptions=True)
                continue
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    async def close(self) -> None:
        """Flush, then refuse further sends."""
        try:
            await self.flush()
        finally:
            self._closed = True
            metrics.flush_published()

    # ------------------------------------------------------------------ preparing

    def _ctx(self) -> Context:
        if self._closed:
            raise ProducerClosed("the producer is closed")
        return self._context()

    def _half_store(self) -> HalfStore:
        """The half messages of this producer's group, on the open app's connection."""
        ctx = self._ctx()
        if self.group is None:
            raise ConfigError(
                "transactional messages need a producer group: app.producer(group=...)"
            )
        if self._halves is None or self._halves.ctx is not ctx:
            self._halves = HalfStore(ctx, self.group)
        return self._halves

    async def _half(
        self,
        topic: str,
        body: Any,
        *,
        tag: str | None,
        keys: Sequence[str] | None,
        properties: dict[str, str] | None,
        sharding_key: str | None,
        selector: QueueSelector | None,
        delay: float | timedelta | None,
        deliver_at: datetime | None,
        delay_level: int | None,
    ) -> HalfMessage:
        """Encode a transactional message and choose its queue, as `send` does."""
        ctx = self._ctx()
        args = self._encode(ctx, body, tag, keys, properties)
        when = _when(ctx, delay, deliver_at, delay_level)
        info = await ctx.topics.ensure(topic)
        queue_id = self._select(info, (body, tag, keys, properties), sharding_key, selector)
        return HalfMessage(topic, queue_id, args, when, body, tag, list(keys or []), properties)

    def _encode(
        self,
        ctx: Context,
        body: Any,
        tag: str | None,
        keys: Sequence[str] | None,
        properties: dict[str, str] | None,
    ) -> list[Any]:
        """The 6 values the send script stores: msg_id, tag, keys, properties, flags, body."""
        settings = ctx.settings
        data, flags = encode_body(body, settings.max_body_bytes, settings.compress_threshold)
        if tag is not None:
            validate_tag(tag)
        keys_field = " ".join(validate_keys(keys)) if keys else ""
        if properties:
            validate_properties(properties)
        props = encode_properties(properties, settings.max_properties_bytes)
        return [new_msg_id(), tag or "", keys_field, props, flags, data]

    def _select(
        self,
        info: TopicInfo,
        parts: _MessageParts,
        sharding_key: str | None,
        selector: QueueSelector | None,
    ) -> int:
        if sharding_key is not None:
            if not isinstance(sharding_key, str) or not sharding_key:
                raise ConfigError("sharding_key must be a non-empty str")
            return zlib.crc32(sharding_key.encode()) % info.queues
        if selector is not None:
            body, tag, keys, properties = parts
            message = Message(body, tag=tag, keys=list(keys or []), properties=properties)
            queue_id = selector(info.queues, message)
            if not isinstance(queue_id, int) or not 0 <= queue_id < info.queues:
                last = info.queues - 1
                raise ConfigError(
                    f"selector returned {queue_id!r}; topic {info.name!r} has queues 0..{last}"
                )
            return queue_id
        n = self._round_robin.get(info.name)
        if n is None:
            n = random.randrange(info.queues)  # RocketMQ starts each producer at a random queue
        self._round_robin[info.name] = n + 1
        return n % info.queues

    def _submit_nowait(
        self,
        ctx: Context,
        topic: str,
        args: list[Any],
        future: asyncio.Future[SendResult] | None,
        parts: _MessageParts,
        sharding_key: str | None,
        selector: QueueSelector | None,
        when: _When | None,
    ) -> None:
        if self._outstanding >= ctx.settings.max_pending_sends:
            raise PublishError(
                f"{self._outstanding} sends are already waiting (max_pending_sends); "
                "await app.flush() or use await app.send(...) to slow down"
            )
        deadline = time.monotonic() + ctx.settings.send_timeout
        item = _Outgoing(topic, args, future, deadline, when=when)
        self._outstanding += 1
        info = ctx.topics.cached(topic)
        if info is not None:
            item.queue_id = self._select(info, parts, sharding_key, selector)
            self._enqueue(item)
            return

        async def resolve_topic() -> None:
            try:
                item.queue_id = self._select(
                    await ctx.topics.ensure(topic), parts, sharding_key, selector
                )
            except Exception as exc:
                self._fail([item], exc)
                return
            self._enqueue(item)

        task = asyncio.get_running_loop().create_task(resolve_topic())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ sending

    def _enqueue(self, item: _Outgoing) -> None:
        self._buffer.append(item)
        if not self._flushing:
            self._start_drainer()

    def _start_drainer(self) -> None:
        self._flushing = True
        task = asyncio.get_running_loop().create_task(self._drain())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain(self) -> None:
        try:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                await self._flush(batch)
        finally:
            self._flushing = False
            if self._buffer:  # cancelled mid-way: do not strand what is queued
                self._fail(self._buffer, ProducerClosed("the producer was stopped"))
                self._buffer = []
            if self._outstanding == 0:
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
    def _chunks(items: list[_Outgoing], limit: int) -> list[list[_Outgoing]]:
        """One chunk per queue: a round trip carries at most one chunk per queue (dedup relies on
        it). A queue's chunk holds up to `limit` messages, or one whole batch; the rest waits for
        the next round trip."""
        by_queue: dict[tuple[str, int, bool], list[_Outgoing]] = {}
        leftover: list[_Outgoing] = []
        for item in items:
            chunk = by_queue.setdefault((item.topic, item.queue_id, item.when is not None), [])
            continues_batch = (
                bool(chunk) and item.batch is not None and item.batch is chunk[-1].batch
            )
            if len(chunk) < limit or continues_batch:
                chunk.append(item)
            else:
                leftover.append(item)
        items[:] = leftover
        return list(by_queue.values())

    def _send_keys(self, ctx: Context, topic: str, queue_id: int) -> tuple[str, str]:
        """The `send` script's keys for a queue (the stream, this session's dedup record)."""
        session = self.session
        cache = self._send_keys_cache
        if cache[0] is not ctx or cache[1] != session:
            cache = self._send_keys_cache = (ctx, session, {})
        keys = cache[2].get((topic, queue_id))
        if keys is None:
            queue = ctx.keys.queue(topic, queue_id)
            keys = cache[2][(topic, queue_id)] = (queue.stream, queue.dedup(session))
        return keys

    def _command(self, ctx: Context, chunk: list[_Outgoing], retry: bool) -> tuple[Any, ...]:
        first = chunk[0]
        args: list[Any] = [int(ctx.settings.dedup_window * 1000), "1" if retry else "0"]
        if first.when is None:
            for item in chunk:
                args += item.args
            script = ctx.conn.scripts["send"]
            return script.evalsha_args(self._send_keys(ctx, first.topic, first.queue_id), args)
        queue = ctx.keys.queue(first.topic, first.queue_id)
        args.append(ctx.keys.wake(first.topic))
        for item in chunk:
            assert item.when is not None
            args += item.when
            args += item.args
        keys = (queue.stream, queue.delay, queue.delay_payload, queue.dedup(f"{self.session}:d"))
        return ctx.conn.scripts["schedule"].evalsha_args(keys, args)

    async def _flush(self, items: list[_Outgoing]) -> None:
        """Store `items`, resolving or failing each; one round trip per attempt."""
        try:
            ctx = self._context()
        except Exception as exc:
            self._fail(items, exc)
            return
        pending = list(items)
        try:
            while pending:
                chunks = self._chunks(pending, ctx.settings.max_batch_messages)
                await self._store(ctx, chunks)
        except BaseException:
            self._fail(pending, ProducerClosed("the send was cancelled before it was attempted"))
            raise

    async def _store(self, ctx: Context, chunks: list[list[_Outgoing]]) -> None:
        """Store chunks (at most one per queue), retrying transient failures within the deadline."""
        wire = self._wire_for(ctx)
        try:
            await self._attempts(ctx, wire, chunks)
        except BaseException:
            cancelled = PublishError("the send was cancelled; the message may or may not be stored")
            for chunk in chunks:
                self._fail(chunk, cancelled)
            raise

    async def _attempts(self, ctx: Context, wire: WireSet, chunks: list[list[_Outgoing]]) -> None:
        """Round trips until every chunk is resolved or failed; `chunks` always holds the rest."""
        settings = ctx.settings
        backoff: Backoff | None = None
        retrying = False
        while chunks:
            commands = [self._command(ctx, chunk, retrying) for chunk in chunks]
            deadline = min(chunk[0].deadline for chunk in chunks)
            started = time.perf_counter()
            try:
                results = await wire.execute(commands, max(0.001, deadline - time.monotonic()))
            except Exception as exc:
                if not is_transient(exc):
                    for chunk in chunks:
                        self._fail(chunk, BrokerError(f"send failed: {exc!r}"))
                    return
                results = [exc] * len(chunks)
            retry: list[list[_Outgoing]] = []
            last_error: BaseException | None = None
            elapsed = time.perf_counter() - started
            for chunk, result in zip(chunks, results, strict=True):
                if not isinstance(result, BaseException):
                    self._resolve(chunk, result)
                    topic = chunk[0].topic
                    sizes = [len(item.args[5]) for item in chunk]
                    metrics.published(topic, "ok", len(chunk), elapsed, sizes=sizes)
                elif is_transient(result):
                    retry.append(chunk)
                    last_error = result
                else:
                    self._fail(chunk, _script_failure(result))
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
                    self._fail(chunk, error)
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

    def _resolve(self, chunk: list[_Outgoing], reply: list[Any]) -> None:
        delayed = chunk[0].when is not None
        for i, item in enumerate(chunk):
            sink = item.sink
            if sink is None:
                continue
            if delayed:
                entry_id, due = reply[2 * i], reply[2 * i + 1]
                offset = entry_id.decode() if entry_id else ""
                deliver_at = None if entry_id else datetime.fromtimestamp(int(due) / 1000, UTC)
            else:
                offset, deliver_at = reply[i].decode(), None
            result = SendResult(
                SendStatus.SEND_OK, item.args[0], item.topic, item.queue_id, offset, deliver_at
            )
            if isinstance(sink, _BatchSink):
                sink.set(item.index, result)
            elif not sink.done():
                sink.set_result(result)
        self._done(len(chunk))

    def _fail(self, chunk: list[_Outgoing], exc: BaseException) -> None:
        per_topic: dict[str, int] = {}
        for item in chunk:
            per_topic[item.topic] = per_topic.get(item.topic, 0) + 1
        for topic, count in per_topic.items():
            metrics.published(topic, "error", count)
        for item in chunk:
            sink = item.sink
            if sink is None:
                log.error("one-way send to %s failed: %s", item.topic, exc)
            elif isinstance(sink, _BatchSink):
                sink.fail(exc)
            elif not sink.done():
                sink.set_exception(exc)
        self._done(len(chunk))

    def _done(self, count: int) -> None:
        self._outstanding -= count
        if self._space_waiters:
            self._wake(self._space_waiters)
        if self._outstanding == 0 and self._idle_waiters and not self._flushing:
            self._wake(self._idle_waiters)

    async def _wait_for_space(self, ctx: Context) -> None:
        limit = ctx.settings.max_pending_sends
        while self._outstanding >= limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._space_waiters.append(waiter)
            await waiter

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()


def _when(
    ctx: Context,
    delay: float | timedelta | None,
    deliver_at: datetime | None,
    delay_level: int | None,
) -> _When | None:
    """Validate the delay arguments (at most one) against `max_delay`."""
    given = [x is not None for x in (delay, deliver_at, delay_level)]
    if sum(given) > 1:
        raise ConfigError("give at most one of delay, deliver_at and delay_level")
    limit = ctx.settings.max_delay
    if delay is not None or delay_level is not None:
        if delay is not None:
            wait = seconds(delay, "delay")
        else:
            assert delay_level is not None
            wait = delay_level_seconds(delay_level)
        if wait > limit:
            raise ConfigError(f"delay {wait:g}s is beyond max_delay ({limit:g}s)")
        return ("after", int(wait * 1000))
    if deliver_at is not None:
        if not isinstance(deliver_at, datetime):
            raise ConfigError(f"deliver_at must be a datetime, got {type(deliver_at).__name__}")
        moment = deliver_at if deliver_at.tzinfo else deliver_at.astimezone()
        due = moment.timestamp()
        if due - time.time() > limit:
            raise ConfigError(f"deliver_at {moment.isoformat()} is beyond max_delay ({limit:g}s)")
        return ("at", math.ceil(due * 1000))
    return None


def _script_failure(exc: BaseException) -> BaseException:
    if isinstance(exc, ResponseError):
        try:
            raise_script_error("send", exc)
        except BrokerError as wrapped:
            return wrapped
        return broker_error(exc, "send")  # BrokerFull when Redis is full, else BrokerError
    return exc


def _callback_adapter(
    callback: SendCallback | None, on_error: ErrorCallback | None
) -> Callable[[asyncio.Future[SendResult]], None]:
    def done(future: asyncio.Future[SendResult]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        try:
            if exc is None:
                if callback is not None:
                    callback(future.result())
            elif on_error is not None:
                on_error(exc)
            else:
                log.error("async send failed: %s", exc)
        except Exception:
            log.exception("send callback raised")

    return done
