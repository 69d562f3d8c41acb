"""The blocking producer: `rmq.sync.Producer` and `rmq.sync.Transaction`.

Each method builds the same `Outgoing` record as the async producer and hands it to the client's
event loop, where an `rmq.Producer` stores it: the same encoding, queue choice, dedup and group
commit (concurrent threads share round trips). `send` blocks until the message is stored (a lone
one goes out from the calling thread: `rmq.sync.inline`). `send_async` and `send_oneway` check
and encode the message in the calling thread, so bad input raises there, then queue it without
waiting; at most `max_pending_sends` of them wait per producer, and a thread that would exceed
that blocks until one is stored (back-pressure blocks instead of raising). A one-way send that
fails later is logged, as in the async API; `flush()` waits for all of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import producer as async_producer
from ..consumer.spec import _is_coroutine_function
from ..errors import ConfigError, PublishError
from ..message import Message, SendResult
from ..names import validate_topic
from ..outgoing import Outgoing, QueueSelector, encode
from ..tracing import hooks as tracing
from ..transaction import Transaction as AsyncTransaction
from ..transaction.types import LocalTransaction, TransactionSendResult, TransactionState
from .loop import Waiter

if TYPE_CHECKING:
    from .app import App, Opened

__all__ = ["ErrorCallback", "Producer", "SendCallback", "Transaction"]

log = logging.getLogger("rmq.sync")

SendCallback = Callable[[SendResult], object]
"""Called with the result of a `send_async`, on the client's event loop thread: keep it short."""
ErrorCallback = Callable[[BaseException], object]
"""Called with the error of a failed `send_async`, on the client's event loop thread."""


class Producer:
    """A blocking producer; get one from `client.producer(group=...)` (`client.send` uses a
    default one). Thread-safe: any number of threads may send at once."""

    def __init__(self, client: App, group: str | None = None, checker: Any = None) -> None:
        self._client = client
        self.group = group
        self.checker = checker

    def _producer(self, state: Opened) -> async_producer.Producer:
        """The async producer behind this one, on the client's loop (made on first use)."""
        found = state.producers.get(self)
        if found is None:
            found = state.producers[self] = state.app.producer(self.group, self.checker)
        return found

    # ------------------------------------------------------------------ sends

    def send(
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
        """Send one message and block until Redis stored it; return where it went.

        See `rmq.Producer.send` for the options (a delayed message's `deliver_at` is set).
        """
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        state = self._client._opened()
        queued = state.queue_of(self)
        if not queued:  # nothing of ours on the loop: send from this thread if nobody else is
            done = state.inline_for(self).send(out)
            if done is not None:
                return done
        waiter: Waiter[SendResult] = Waiter(state.runner)
        queued.append(None)
        try:
            state.runner.submit_in(_context(), self._send, state, out, waiter)
            return waiter.wait()
        finally:
            queued.pop()

    def _send(self, state: Opened, out: Outgoing, waiter: Waiter[SendResult]) -> None:
        try:
            future = self._start(state, out)
        except BaseException as exc:
            waiter.fail(exc)
            return
        future.add_done_callback(waiter.from_future)

    def _start(self, state: Opened, out: Outgoing) -> asyncio.Future[SendResult]:
        """On the loop: queue `out` for the next round trip, or, while the pending sends are at
        `max_pending_sends`, wait for room (an awaited send)."""
        producer = self._producer(state)
        try:
            return producer.deliver_async(out)
        except PublishError as exc:
            if type(exc) is not PublishError:  # too large, closed: not back-pressure
                raise
            return asyncio.ensure_future(producer.deliver(out))

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
    ) -> concurrent.futures.Future[SendResult]:
        """Send without waiting for Redis: returns a `concurrent.futures.Future` at once (bad
        input raises here); `callback(result)` / `on_error(exc)` run on the client's loop
        thread."""
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        result: concurrent.futures.Future[SendResult] = concurrent.futures.Future()
        self._hand_over(out, partial(_settle, result, callback, on_error, out.topic))
        return result

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
        """Fire and forget: returns at once (bad input raises here); a later failure is logged.

        Queued messages are stored before `flush()`, `close()` and interpreter exit return.
        """
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        self._hand_over(out, partial(_settle, None, None, None, out.topic))

    def _hand_over(
        self, out: Outgoing, settle: Callable[[asyncio.Future[SendResult]], None]
    ) -> None:
        """Check and encode `out` here (bad input raises in the caller's thread), take a place
        among the `max_pending_sends` (blocking while none is free), and queue it on the loop
        without waiting for it."""
        state = self._client._opened()
        validate_topic(out.topic)
        if tracing.on_send is None:
            encode(state.app.settings, out)  # thrown away: the loop encodes it again, cheaply
        else:
            quiet = tracing.QUIET.set(True)  # the span is made where it is stored
            try:
                encode(state.app.settings, out)
            finally:
                tracing.QUIET.reset(quiet)
        places = state.places_of(self)
        places.acquire()
        queued = state.queue_of(self)
        queued.append(None)

        def settled(future: asyncio.Future[SendResult]) -> None:
            queued.pop()
            places.release()
            settle(future)

        state.runner.submit_in(_context(), self._accept, state, out, settled)

    def _accept(
        self,
        state: Opened,
        out: Outgoing,
        settle: Callable[[asyncio.Future[SendResult]], None],
    ) -> None:
        try:
            future = self._start(state, out)
        except BaseException as exc:  # a selector that raised, a closed producer
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        future.add_done_callback(settle)

    def send_batch(
        self,
        topic: str,
        messages: Sequence[Message | Any],
        *,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
    ) -> list[SendResult]:
        """Send messages to one queue in one round trip (consecutive offsets); blocks until
        stored. Items that are not `Message` objects are used as bodies."""
        state = self._client._opened()
        producer = partial(self._producer, state)
        return state.runner.run(
            lambda: producer().send_batch(
                topic, messages, sharding_key=sharding_key, selector=selector
            )
        )

    def flush(self) -> None:
        """Block until every message sent so far (one-way ones too) is stored or has failed."""
        state = self._client._opened()
        producer = partial(self._producer, state)
        state.runner.run(lambda: producer().flush())

    # ------------------------------------------------------------------ transactions

    def send_in_transaction(
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
        """Store a half message, run `execute(msg, arg)`, then commit or roll back as it
        returns (see `rmq.Producer.send_in_transaction`).

        A plain `execute` runs in the calling thread, so it sees that thread's database
        connection and transaction (Django's are per thread); past `execute_timeout` its answer
        is ignored and the half message is left to the check-back. An `async def` one runs on
        the client's loop.
        """
        if not callable(execute):
            raise ConfigError(f"execute must be callable, got {execute!r}")
        state = self._client._opened()
        calls: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        local = execute
        if not _is_coroutine_function(execute):
            local = partial(_in_caller, calls, state.runner.loop)
        options: dict[str, Any] = dict(
            tag=tag, keys=keys, properties=properties, sharding_key=sharding_key,
            selector=selector, delay=delay, deliver_at=deliver_at, delay_level=delay_level,
        )  # fmt: skip
        producer = partial(self._producer, state)
        done: Waiter[TransactionSendResult] = Waiter(state.runner)

        async def main() -> TransactionSendResult:
            try:
                return await producer().send_in_transaction(
                    topic, body, execute=local, arg=arg, execute_timeout=execute_timeout,
                    **options,
                )  # fmt: skip
            finally:
                calls.put(("done",))

        state.runner.submit_in(contextvars.copy_context(), state.runner._start, main, done)
        while True:  # run the local transaction here when the loop asks for it
            item = calls.get()
            if item[0] == "done":
                return done.wait()
            _, msg, given, answer = item
            try:
                decided = execute(msg, given)
            except BaseException as exc:
                state.runner.loop.call_soon_threadsafe(_resolve, answer, None, exc)
            else:
                state.runner.loop.call_soon_threadsafe(_resolve, answer, decided, None)

    def transaction(self) -> Transaction:
        """A transaction of one or more messages: `with producer.transaction() as tx:`.

        `tx.send(...)` takes the options of `send`; leaving the block normally commits every
        message, an exception rolls them all back. See `rmq.Transaction`.
        """
        return Transaction(self)


class Transaction:
    """Messages sent in one transaction (`with producer.transaction() as tx:`), as
    `rmq.Transaction` but blocking: `tx.send`, `tx.commit()`, `tx.rollback()`, `tx.state`,
    `tx.results`, `tx.msg_ids`."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._tx: AsyncTransaction | None = None
        self._state: Opened | None = None

    def _open(self) -> tuple[Opened, AsyncTransaction]:
        if self._tx is None or self._state is None:
            state = self._producer._client._opened()
            producer = partial(self._producer._producer, state)

            async def make() -> AsyncTransaction:
                return producer().transaction()

            self._tx, self._state = state.runner.run(make), state
        return self._state, self._tx

    @property
    def state(self) -> TransactionState | None:
        """None while open, then COMMIT, ROLLBACK or UNKNOWN."""
        return None if self._tx is None else self._tx.state

    @property
    def results(self) -> list[SendResult]:
        """The committed messages' results (offsets filled in)."""
        return [] if self._tx is None else list(self._tx.results)

    @property
    def msg_ids(self) -> list[str]:
        return [] if self._tx is None else self._tx.msg_ids

    def send(
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
        """Add a message (a half message now, visible at commit); see `rmq.Transaction.send`."""
        state, tx = self._open()
        return state.runner.run(
            lambda: tx.send(
                topic, body, tag=tag, keys=keys, properties=properties,
                sharding_key=sharding_key, selector=selector, delay=delay,
                deliver_at=deliver_at, delay_level=delay_level,
            )
        )  # fmt: skip

    def commit(self) -> list[SendResult]:
        """Commit every message; see `rmq.Transaction.commit`."""
        state, tx = self._open()
        return state.runner.run(tx.commit)

    def rollback(self) -> None:
        """Roll back every message (idempotent); see `rmq.Transaction.rollback`."""
        state, tx = self._open()
        state.runner.run(tx.rollback)

    def __enter__(self) -> Transaction:
        self._open()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        state, tx = self._open()
        state.runner.run(lambda: tx.__aexit__(et, e, tb))


def _context() -> contextvars.Context | None:
    """The caller's context variables, for the loop to send in, while tracing is on (its
    trace context makes the PRODUCER span a child of the caller's span)."""
    return contextvars.copy_context() if tracing.on_send is not None else None


async def _in_caller(
    calls: queue.SimpleQueue[tuple[Any, ...]],
    loop: asyncio.AbstractEventLoop,
    msg: Message,
    arg: Any,
) -> Any:
    """The local transaction as the async producer runs it: asks the calling thread to run it
    and waits for its answer (a timeout cancels only this wait)."""
    answer: asyncio.Future[Any] = loop.create_future()
    calls.put(("call", msg, arg, answer))
    return await answer


def _resolve(answer: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if answer.done():  # past execute_timeout: nobody waits for it any more
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(value)


def _settle(
    result: concurrent.futures.Future[SendResult] | None,
    callback: SendCallback | None,
    on_error: ErrorCallback | None,
    topic: str,
    future: asyncio.Future[SendResult],
) -> None:
    """On the loop, when a queued send ended: its future, callbacks, or (one-way) a log line."""
    if future.cancelled():
        error: BaseException | None = PublishError(
            "the send was cancelled; the message may or may not be stored"
        )
    else:
        error = future.exception()
    if result is None:
        if error is not None:
            log.error("one-way send to %s failed: %s", topic, error)
        return
    if error is not None:
        result.set_exception(error)
    else:
        result.set_result(future.result())
    try:
        if error is None:
            if callback is not None:
                callback(future.result())
        elif on_error is not None:
            on_error(error)
    except Exception:
        log.exception("send callback raised")
