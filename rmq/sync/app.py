"""`rmq.sync.App`: the blocking client. It owns an `rmq.App` and the event loop thread that runs
it, opened on first use (so a module-level client costs nothing until something is sent).

Closing (`close()`, leaving `with`, or interpreter exit) flushes: every one-way and async send
queued before it is stored (or has failed within `send_timeout`) before the connection closes.
A client used again in a forked child (gunicorn's `--preload`, multiprocessing) opens its own
connection and loop there; the parent's are never touched from the child.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from .. import app as async_app
from .. import producer as async_producer
from ..consumer.spec import StartPosition
from ..errors import ConfigError, ProducerClosed
from ..message import Message, SendResult
from ..metrics_export import MetricsServer, serve_metrics
from ..names import validate_group
from ..outgoing import QueueSelector
from ..settings import Settings
from ..transaction.types import TransactionChecker
from .inline import Inline
from .loop import LoopThread
from .producer import ErrorCallback, Producer, SendCallback
from .pull import PullConsumer

__all__ = ["App"]

log = logging.getLogger("rmq.sync")
T = TypeVar("T")

_clients: weakref.WeakSet[App] = weakref.WeakSet()
_abandoned: list[Opened] = []
"""A forked child's copies of its parent's clients: kept, never used, never garbage-collected
(collecting them would close sockets the parent still uses)."""


@dataclass(eq=False)
class Opened:
    """An open client: its loop thread, the async App, and the async producers behind the
    blocking ones (made and used on the loop only)."""

    runner: LoopThread
    app: async_app.App
    pid: int
    producers: dict[Producer, async_producer.Producer] = field(default_factory=dict)
    inline: dict[Producer, Inline] = field(default_factory=dict)
    """The in-thread sender of each blocking producer (`rmq.sync.inline`)."""
    queued: dict[Producer, deque[None]] = field(default_factory=dict)
    """One item per send of a producer handed to the loop and not settled yet (append and pop
    are atomic): while there is any, its sends go through the loop too, in order."""
    places: dict[Producer, threading.BoundedSemaphore] = field(default_factory=dict)
    """Free places among the `max_pending_sends` of each producer's queued sends."""

    def inline_for(self, producer: Producer) -> Inline:
        found = self.inline.get(producer)
        if found is None:
            made = Inline(self.app.context, f"rmq:{self.app.name}:inline", self.runner.loop)
            found = self.inline.setdefault(producer, made)
            if found is not made:
                made.close()
        return found

    def places_of(self, producer: Producer) -> threading.BoundedSemaphore:
        found = self.places.get(producer)
        if found is None:
            made = threading.BoundedSemaphore(self.app.settings.max_pending_sends)
            found = self.places.setdefault(producer, made)
        return found

    def queue_of(self, producer: Producer) -> deque[None]:
        found = self.queued.get(producer)
        if found is None:
            found = self.queued.setdefault(producer, deque())
        return found


class App:
    """A thread-safe blocking client for code without an event loop (Django and Flask views,
    scripts, Celery tasks): the producer and pull-consumer API of `rmq.App`, blocking.

    ```python
    client = rmq.sync.App()               # Settings.from_env(); keyword arguments override
    client.send("orders", {"id": 1}, tag="paid")
    client.send_oneway("logs", "a line")  # stored before close() or interpreter exit returns
    ```

    It connects on first use; `close()` (or `with rmq.sync.App() as client:`) flushes and
    disconnects, and interpreter exit closes every client still open.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        if settings is None:
            self.settings = Settings.from_env(**overrides)
        else:
            self.settings = settings.replace(**overrides) if overrides else settings
        self._lock = threading.Lock()
        self._state: Opened | None = None
        self._closed = False
        self._default = Producer(self)
        _clients.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._state else "not connected"
        return f"<rmq.sync.App namespace={self.settings.namespace!r} {state}>"

    # ------------------------------------------------------------------ lifecycle

    def _opened(self) -> Opened:
        """The open client, opened now if need be (in this process)."""
        state = self._state
        if state is not None and state.pid == os.getpid():
            if threading.get_ident() == state.runner.ident:
                raise RuntimeError(
                    "a blocking rmq.sync call from the client's own event loop thread (in a "
                    "send callback?) would block or wait forever: call it from another thread"
                )
            return state
        with self._lock:
            if self._closed:
                raise ProducerClosed("the rmq.sync client is closed")
            state = self._state
            if state is None or state.pid != os.getpid():
                if state is not None:
                    _abandoned.append(state)
                state = self._state = self._connect()
            return state

    def _connect(self) -> Opened:
        runner = LoopThread(f"rmq-sync-{self.settings.namespace}")
        app = async_app.App(self.settings)
        try:
            runner.run(app.__aenter__)
        except BaseException:
            runner.stop()
            raise
        return Opened(runner, app, os.getpid())

    def open(self) -> App:
        """Connect now (otherwise the first call does); raises `BrokerUnavailable` after
        `startup_timeout` when Redis cannot be reached."""
        self._opened()
        return self

    def close(self) -> None:
        """Flush (every queued send stored or failed), disconnect and stop the loop thread.

        Further calls raise `ProducerClosed`. Called for every open client at interpreter exit.
        """
        with self._lock:
            state, self._state = self._state, None
            self._closed = True
        if state is None or state.pid != os.getpid():
            return
        try:
            state.runner.run(lambda: state.app.__aexit__(None, None, None))
        finally:
            state.runner.stop()
            for inline in list(state.inline.values()):
                inline.close()

    def __enter__(self) -> App:
        return self.open()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def run(self, fn: Callable[[async_app.App], Awaitable[T]]) -> T:
        """Run `await fn(app)` on the client's loop, with its open `rmq.App`, and return the
        result: for what has no blocking form here, e.g. `client.run(lambda a: a.admin.topics())`.
        """
        state = self._opened()
        return state.runner.run(lambda: fn(state.app))

    # ------------------------------------------------------------------ producing

    def producer(
        self, group: str | None = None, checker: TransactionChecker | None = None
    ) -> Producer:
        """A blocking producer sharing this client's connection (`group` names it, for
        transactions; with `checker`, this process answers the group's check-backs while the
        client is open, on its loop: a plain checker runs in a worker thread)."""
        if group is not None:
            validate_group(group)
        if checker is not None:
            if group is None:
                raise ConfigError("a transaction checker needs a producer group: group=...")
            if not callable(checker):
                raise ConfigError(f"checker must be callable, got {checker!r}")
        return Producer(self, group, checker)

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
        """Send one message and block until it is stored. See `Producer.send`."""
        return self._default.send(
            topic, body, tag=tag, keys=keys, properties=properties, sharding_key=sharding_key,
            selector=selector, delay=delay, deliver_at=deliver_at, delay_level=delay_level,
        )  # fmt: skip

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
        """Send without waiting for Redis; returns a `concurrent.futures.Future[SendResult]`.
        See `Producer.send_async`."""
        return self._default.send_async(
            topic, body, tag=tag, keys=keys, properties=properties, sharding_key=sharding_key,
            selector=selector, callback=callback, on_error=on_error, delay=delay,
            deliver_at=deliver_at, delay_level=delay_level,
        )  # fmt: skip

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
        """Fire and forget (stored before `flush`, `close` or exit return). See
        `Producer.send_oneway`."""
        self._default.send_oneway(
            topic, body, tag=tag, keys=keys, properties=properties, sharding_key=sharding_key,
            selector=selector, delay=delay, deliver_at=deliver_at, delay_level=delay_level,
        )  # fmt: skip

    def send_batch(
        self,
        topic: str,
        messages: Sequence[Message | Any],
        *,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
    ) -> list[SendResult]:
        """Send messages to one queue in one round trip. See `Producer.send_batch`."""
        return self._default.send_batch(
            topic, messages, sharding_key=sharding_key, selector=selector
        )

    def flush(self) -> None:
        """Block until every pending async and one-way send of this client is stored or failed."""
        state = self._opened()
        state.runner.run(state.app.flush)

    def cancel_delayed(self, topic: str, msg_id: str) -> bool:
        """Cancel a delayed message not delivered yet; False if too late. See `rmq.App`."""
        return self.run(lambda app: app.cancel_delayed(topic, msg_id))

    def serve_metrics(self, port: int = 9464, host: str = "127.0.0.1") -> MetricsServer:
        """Serve this process's metrics on http://host:port/metrics (see `rmq.App`)."""
        return serve_metrics(port, host)

    # ------------------------------------------------------------------ consuming

    def pull_consumer(
        self,
        topic: str,
        group: str,
        *,
        start: StartPosition = "last",
        tag: str | None = None,
        sql: str | None = None,
        max_deliveries: int = 16,
    ) -> PullConsumer:
        """A blocking pull consumer: `with client.pull_consumer(topic, group) as pc:`, then
        `pc.receive(...)`, `pc.ack(...)`, ... See `rmq.App.pull_consumer`."""
        return PullConsumer(
            self, topic, group, start=start, tag=tag, sql=sql, max_deliveries=max_deliveries
        )


def _close_all() -> None:
    """At interpreter exit: close (so flush) every client still open in this process."""
    for client in list(_clients):
        try:
            client.close()
        except Exception:
            log.exception("closing %r at exit failed", client)


def _after_fork() -> None:
    for client in list(_clients):
        client._lock = threading.Lock()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork)
