"""Producer: sync, async, one-way and batch sends; round-robin, sharding-key or custom selection.

Each public method builds one `Outgoing` record, `rmq.outgoing` checks and encodes it and picks
its queue, and `rmq.group_commit` stores it: concurrent sends share round trips, and a retried
round trip never stores a message twice.

Transactional sends (`send_in_transaction`, `transaction()`) live in `rmq.transaction`; the
producer only encodes their messages and chooses their queues, as for any send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from . import metrics
from .context import Context
from .errors import ConfigError, ProducerClosed, PublishError
from .group_commit import BatchSink, GroupCommit, Pending
from .message import Message, SendResult
from .names import validate_group
from .outgoing import Encoded, Outgoing, QueueChooser, QueueSelector, encode
from .transaction.local import Transaction, send_in_transaction
from .transaction.store import HalfStore
from .transaction.types import LocalTransaction, TransactionChecker, TransactionSendResult

__all__ = ["ErrorCallback", "Producer", "QueueSelector", "SendCallback"]

log = logging.getLogger("rmq.producer")

SendCallback = Callable[[SendResult], object]
ErrorCallback = Callable[[BaseException], object]


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
        self._chooser = QueueChooser()
        self._commit = GroupCommit(context)
        self._closed = False

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
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        return await self.deliver(out)

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
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        return self.deliver_async(out, callback, on_error)

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
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        self.deliver_oneway(out)

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
        if isinstance(messages, str | bytes | bytearray | memoryview) or not isinstance(
            messages, Sequence
        ):
            raise ConfigError(
                f"send_batch takes a list of messages or bodies, got {type(messages).__name__}"
            )
        outs = [Outgoing.of(topic, m) for m in messages]
        if not outs:
            return []
        outs[0].sharding_key, outs[0].selector = sharding_key, selector
        return await self.deliver_batch(outs)

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
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        if not callable(execute):
            raise ConfigError(f"execute must be callable, got {execute!r}")
        store = self._half_store()
        limit = execute_timeout
        if limit is None:
            limit = store.ctx.settings.transaction_check_immunity / 2
        elif not (isinstance(limit, int | float) and limit > 0):
            raise ConfigError(f"execute_timeout must be seconds > 0, got {execute_timeout!r}")
        return await send_in_transaction(store, self._chooser, out, execute, arg, limit)

    def transaction(self) -> Transaction:
        """A transaction of one or more messages: `async with producer.transaction() as tx:`.

        `await tx.send(...)` takes the options of `send`; leaving the block normally commits
        every message, an exception rolls them all back. See `rmq.transaction.Transaction`.
        """
        return Transaction(self._half_store(), self._chooser)

    async def flush(self) -> None:
        """Wait until every message sent so far (including one-way ones) is stored or has failed."""
        await self._commit.flush()

    @property
    def session(self) -> str:
        """This producer's id in dedup records: unique per producer object and process."""
        return self._commit.session

    async def close(self) -> None:
        """Flush, then refuse further sends."""
        try:
            await self.flush()
        finally:
            self._closed = True
            metrics.flush_published()

    # ------------------------------------------------------------------ outgoing records

    async def deliver(self, out: Outgoing) -> SendResult:
        """`send` of an outgoing record: wait until it is stored."""
        ctx = self._ctx()
        encoded = encode(ctx.settings, out)
        info = await ctx.topics.ensure(out.topic)
        commit = self._commit
        if commit.outstanding >= ctx.settings.max_pending_sends:
            await commit.wait_for_space(ctx.settings.max_pending_sends)
        queue_id = self._chooser.choose(info, out)
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + ctx.settings.send_timeout
        return await commit.submit(ctx, Pending(out.topic, encoded, future, deadline, queue_id))

    def deliver_async(
        self,
        out: Outgoing,
        callback: SendCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> asyncio.Future[SendResult]:
        """`send_async` of an outgoing record."""
        ctx = self._ctx()
        encoded = encode(ctx.settings, out)
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        if callback is not None or on_error is not None:
            future.add_done_callback(_callback_adapter(callback, on_error))
        self._submit_nowait(ctx, out, encoded, future)
        return future

    def deliver_oneway(self, out: Outgoing) -> None:
        """`send_oneway` of an outgoing record."""
        ctx = self._ctx()
        self._submit_nowait(ctx, out, encode(ctx.settings, out), None)

    async def deliver_batch(self, outs: list[Outgoing]) -> list[SendResult]:
        """`send_batch` of outgoing records: one queue (chosen for the first), consecutive
        offsets."""
        ctx = self._ctx()
        if len(outs) > ctx.settings.max_batch_messages:
            raise ConfigError(
                f"a batch holds at most {ctx.settings.max_batch_messages} messages "
                f"(max_batch_messages), got {len(outs)}"
            )
        encoded = [encode(ctx.settings, out) for out in outs]
        topic = outs[0].topic
        info = await ctx.topics.ensure(topic)
        queue_id = self._chooser.choose(info, outs[0])
        commit = self._commit
        if commit.outstanding >= ctx.settings.max_pending_sends:
            await commit.wait_for_space(ctx.settings.max_pending_sends)
        future: asyncio.Future[list[SendResult]] = asyncio.get_running_loop().create_future()
        sink = BatchSink(future, len(encoded))
        deadline = time.monotonic() + ctx.settings.send_timeout
        items = [
            Pending(topic, e, sink, deadline, queue_id, sink, i) for i, e in enumerate(encoded)
        ]
        commit.add(items)
        commit.enqueue_all(items)
        return await future

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

    def _submit_nowait(
        self,
        ctx: Context,
        out: Outgoing,
        encoded: Encoded,
        future: asyncio.Future[SendResult] | None,
    ) -> None:
        commit = self._commit
        if commit.outstanding >= ctx.settings.max_pending_sends:
            raise PublishError(
                f"{commit.outstanding} sends are already waiting (max_pending_sends); "
                "await app.flush() or use await app.send(...) to slow down"
            )
        deadline = time.monotonic() + ctx.settings.send_timeout
        item = Pending(out.topic, encoded, future, deadline)
        commit.add([item])
        info = ctx.topics.cached(out.topic)
        if info is not None:
            item.queue_id = self._chooser.choose(info, out)
            commit.enqueue(item)
            return

        async def resolve_topic() -> None:
            try:
                item.queue_id = self._chooser.choose(await ctx.topics.ensure(out.topic), out)
            except Exception as exc:
                commit.fail([item], exc)
                return
            commit.enqueue(item)

        commit.track(asyncio.get_running_loop().create_task(resolve_topic()))

    # ------------------------------------------------------------------ sending


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
