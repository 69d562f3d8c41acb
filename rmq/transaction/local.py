"""The producer side of transactions: RocketMQ's `sendMessageInTransaction` and a context manager.

1. Prepare: the half message is stored invisibly (the `prepare` script).
2. The local transaction runs (yours: a database write, ...).
3. Commit (the message becomes visible) or roll back (it is discarded); on UNKNOWN, an exception
   or a timeout, nothing: the half message waits for the check-back (`rmq.transaction.checkback`),
   which asks the producer group's checker.

Messages of one transaction on one queue commit in one script, atomically. Messages on several
queues commit queue by queue, in the order they were first sent to; a producer that dies midway
leaves the rest as half messages, which the check-back resolves. With a checker that answers
what the local transaction decided, the transaction ends all-or-nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any

import anyio

from .. import metrics
from ..consumer.spec import _is_coroutine_function
from ..errors import BrokerUnavailable, ConfigError, TransactionStateError
from ..message import SendResult, SendStatus
from ..outgoing import Outgoing, QueueChooser, QueueSelector, encode
from .store import HalfStore
from .types import HalfMessage, LocalTransaction, TransactionSendResult, TransactionState

__all__ = ["Transaction", "decide", "half_message", "send_in_transaction"]

log = logging.getLogger("rmq.transaction")


_ASYNC: dict[Any, bool] = {}
"""Whether a callable is async, for the callables seen lately (bounded)."""


def _is_async(fn: Any) -> bool:
    known = _ASYNC.get(fn)
    if known is None:
        known = _is_coroutine_function(fn)
        if len(_ASYNC) >= 256:
            _ASYNC.clear()
        _ASYNC[fn] = known
    return known


async def decide(
    fn: Callable[..., Any], args: tuple[Any, ...], limit: float | None, what: str
) -> TransactionState | None:
    """Call `fn(*args)` (async, or sync in a worker thread) and return its decision.

    Returns None when it ran past `limit` seconds (an async one is cancelled, a sync one is
    abandoned: its thread runs on, its answer is ignored). A `None` answer means UNKNOWN; an
    answer that is not a `TransactionState` raises `ConfigError`. What `fn` raises propagates.
    """
    result: Any = None
    if _is_async(fn):
        # A timer that cancels this task costs less than a timeout context per call.
        task = asyncio.current_task()
        assert task is not None
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        timer = None
        if limit is not None:
            timer = asyncio.get_running_loop().call_later(limit, expire)
        try:
            result = await fn(*args)
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                return None
            raise
        finally:
            if timer is not None:
                timer.cancel()
    else:
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                call = partial(fn, *args)
                result = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            if timeout.expired():
                return None
            raise
    if result is None:
        return TransactionState.UNKNOWN
    if result.__class__ is TransactionState:
        return result
    if isinstance(result, TransactionState):
        return result
    raise ConfigError(
        f"{what} must return rmq.TransactionState (COMMIT, ROLLBACK or UNKNOWN), got {result!r}"
    )


async def half_message(store: HalfStore, chooser: QueueChooser, out: Outgoing) -> HalfMessage:
    """`out` encoded and its queue chosen, as for any send (nothing stored yet)."""
    ctx = store.ctx
    encoded = encode(ctx.settings, out)
    info = await ctx.topics.ensure(out.topic)
    return HalfMessage(out.topic, chooser.choose(info, out), encoded, out)


async def send_in_transaction(
    store: HalfStore,
    chooser: QueueChooser,
    out: Outgoing,
    execute: LocalTransaction,
    arg: Any,
    limit: float | None,
) -> TransactionSendResult:
    """Prepare `out` as a half message, run `execute(msg, arg)`, then commit or roll back as it
    decided."""
    half = await half_message(store, chooser, out)
    await store.prepare(half)
    where = f"half message {half.msg_id} on {half.topic}[{half.queue_id}]"
    try:
        state = await decide(execute, (half.message(store.group), arg), limit, "execute")
    except Exception as exc:
        metrics.transactions(half.topic, "unknown")
        exc.add_note(f"rmq: the local transaction raised; {where} is left for the check-back")
        raise
    if state is None:
        log.warning("local transaction of %s ran past %gs: left for the check-back", where, limit)
        state = TransactionState.UNKNOWN
    committed = None
    if state is TransactionState.COMMIT:
        (committed,) = await store.commit(half.topic, half.queue_id, [half.msg_id])
    elif state is TransactionState.ROLLBACK:
        await store.rollback(half.topic, half.queue_id, [half.msg_id])
    else:
        metrics.transactions(half.topic, "unknown")
    return half.result(state, committed)


class Transaction:
    """Messages sent in one transaction (`async with producer.transaction() as tx:`).

    `tx.send(...)` stores a half message at once (consumers see nothing yet) and returns its
    `SendResult` without an offset. Leaving the block normally commits every message (then
    `tx.results` hold the offsets); an exception rolls them all back and propagates. `commit()`
    and `rollback()` may also be called inside the block; the block then ends the transaction
    no further. `state` is None while open, then COMMIT, ROLLBACK or UNKNOWN (left for the
    check-back, after a commit that could not reach Redis).
    """

    def __init__(self, store: HalfStore, chooser: QueueChooser) -> None:
        self._store = store
        self._chooser = chooser
        self._queues: dict[tuple[str, int], list[HalfMessage]] = {}
        self._doubtful = False
        self.state: TransactionState | None = None
        self.results: list[SendResult] = []

    @property
    def msg_ids(self) -> list[str]:
        """The ids of the messages sent in this transaction, in send order per queue."""
        return [h.msg_id for halves in self._queues.values() for h in halves]

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
        """Add a message to the transaction (a half message now, visible at commit).

        Takes the options of `Producer.send`; a delay starts when the transaction commits.
        """
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        if self.state is not None:
            raise TransactionStateError(f"the transaction is {self.state.lower()} already")
        half = await half_message(self._store, self._chooser, out)
        self._queues.setdefault((half.topic, half.queue_id), []).append(half)
        try:
            await self._store.prepare(half)
        except BaseException:
            self._doubtful = True  # maybe stored: a rollback covers it, a commit must not
            raise
        return SendResult(SendStatus.SEND_OK, half.msg_id, half.topic, half.queue_id, "")

    async def commit(self) -> list[SendResult]:
        """Commit every message, queue by queue; returns their results (offsets filled in).

        Raises `TransactionStateError` when a check-back rolled the messages back already (the
        whole transaction is then rolled back), or when a send in this transaction failed.
        `BrokerUnavailable` leaves the messages not committed yet to the check-back.
        """
        if self.state is not None:
            if self.state is TransactionState.COMMIT:
                return self.results
            raise TransactionStateError(f"the transaction is {self.state.lower()} already")
        if self._doubtful:
            await self.rollback()
            raise TransactionStateError(
                "a send in this transaction failed, so it was rolled back instead of committed"
            )
        results: list[SendResult] = []
        for index, ((topic, queue_id), halves) in enumerate(self._queues.items()):
            try:
                pairs = await self._store.commit(topic, queue_id, [h.msg_id for h in halves])
            except TransactionStateError:
                if index == 0:  # nothing is visible yet: keep the transaction all-or-nothing
                    await self.rollback()
                raise
            except BrokerUnavailable:
                self.state = TransactionState.UNKNOWN
                for (t, _), rest in list(self._queues.items())[index:]:
                    metrics.transactions(t, "unknown", len(rest))
                raise
            for half, pair in zip(halves, pairs, strict=True):
                results.append(half.result(TransactionState.COMMIT, pair))
        self.state = TransactionState.COMMIT
        self.results = results
        return results

    async def rollback(self) -> None:
        """Roll back every message (idempotent). `TransactionStateError` if one was committed."""
        if self.state is TransactionState.ROLLBACK:
            return
        for (topic, queue_id), halves in self._queues.items():
            await self._store.rollback(topic, queue_id, [h.msg_id for h in halves])
        self.state = TransactionState.ROLLBACK

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.state is not None:
            return
        if e is None:
            await self.commit()
            return
        try:
            with anyio.CancelScope(shield=True):
                await self.rollback()
        except BrokerUnavailable as exc:
            self.state = TransactionState.UNKNOWN
            e.add_note(f"rmq: the rollback failed ({exc}); the check-back will resolve it")
