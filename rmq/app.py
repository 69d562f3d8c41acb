"""App: the one object users create. It holds settings and the connection, registers consumers,
sends messages, and runs workers.

Lifecycle hooks, `app.state` and the choice of consumers to run live in `rmq.lifecycle`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from .admin import Admin, Position, QueueReset
from .consumer.broadcast import BroadcastConsumer
from .consumer.inbound import GroupDeclaration, Positions, declare_groups
from .consumer.orderly import OrderlyConsumer
from .consumer.pull import PullConsumer
from .consumer.push import PushConsumer
from .consumer.runtime import PushRuntime
from .consumer.scheduler import Scheduler
from .consumer.spec import (
    AllocateStrategy,
    ConsumeMode,
    ConsumerSpec,
    Handler,
    MessageModel,
    StartPosition,
)
from .context import Context
from .dlq import DeadLetters
from .doctor import log_startup_warnings
from .errors import ConfigError, ConsumerError, ProducerClosed
from .health import Liveness
from .ids import consumer_name
from .lifecycle import Hook, Hooks, State, select_consumers
from .message import Message, SendResult
from .metrics_export import MetricsServer, serve_metrics
from .names import validate_group, validate_topic
from .outgoing import Outgoing, QueueSelector
from .producer import ErrorCallback, Producer, SendCallback
from .retention import Trimmer
from .retry import RetryPolicy
from .settings import Settings
from .transaction.checkback import CheckBack
from .transaction.types import TransactionChecker

__all__ = ["App"]

log = logging.getLogger("rmq.app")
H = TypeVar("H", bound=Handler)
C = TypeVar("C", bound=TransactionChecker)
K = TypeVar("K", bound=Hook)


class App:
    """RocketMQ's producer/consumer model on Redis Streams.

    ```python
    app = rmq.App()                       # Settings.from_env(); keyword arguments override

    @app.consumer("orders", group="billing")
    async def bill(msg: rmq.Message) -> None: ...

    async with app:
        await app.send("orders", {"id": 1}, tag="paid")
    ```
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        if settings is None:
            self.settings = Settings.from_env(**overrides)
        else:
            self.settings = settings.replace(**overrides) if overrides else settings
        self.name = consumer_name()
        self._liveness = Liveness(self.name)
        self._specs: list[ConsumerSpec] = []
        self._ctx: Context | None = None
        self._depth = 0
        self._producers: list[Producer] = []
        self._checkers: dict[str, TransactionChecker] = {}
        self._checkbacks: list[asyncio.Task[None]] = []
        self._default_producer = self.producer()
        self._consumers: list[ConsumerRuntime] = []
        self._stop_requested: anyio.Event | None = None
        self._pull_consumers = 0
        self._pull_positions: dict[tuple[str, str], Positions] = {}
        self._hooks = Hooks()
        self._selected: list[ConsumerSpec] | None = None
        self.state = State()
        """Shared resources of this process, set by the startup hooks (see `on_startup`)."""

    def __repr__(self) -> str:
        return f"<rmq.App namespace={self.settings.namespace!r} consumers={len(self._specs)}>"

    # ------------------------------------------------------------------ registration

    def consumer(
        self,
        topic: str,
        *,
        group: str,
        concurrency: int | None = None,
        start: StartPosition = "last",
        prefetch: int | None = None,
        fetch_batch: int | None = None,
        visibility_timeout: float | None = None,
        retry: RetryPolicy | Sequence[float | timedelta] | float | None = None,
        max_retries: int = 16,
        max_deliveries: int = 5,
        timeout: float | None = None,
        tag: str | None = None,
        sql: str | None = None,
        mode: ConsumeMode = "concurrently",
        model: MessageModel = "clustering",
        suspend: float = 1.0,
        allocate: AllocateStrategy | None = None,
        instance_id: str | None = None,
        broadcast_retries: int = 3,
    ) -> Callable[[H], H]:
        """Register the decorated function as a push consumer of `topic` in `group`.

        Returning normally acknowledges the message. Raising `rmq.Retry(delay=...)` or any
        exception retries it after a backoff (`retry`: a policy, a list of delays or one delay;
        default RocketMQ's 10s 30s 1m ... 2h), up to `max_retries` times, then dead-letters it;
        `rmq.Reject(reason)` dead-letters at once; `rmq.Skip` acknowledges without handling.
        A handler running longer than `timeout` seconds is cancelled and counts as a failure.
        A message delivered more than `max_deliveries` times without an outcome (it kills its
        consumers) is dead-lettered. Plain `def` handlers run in worker threads.

        `tag` ("TagA || TagB", "*") and `sql` (RocketMQ's SQL92 over properties and TAGS) filter:
        messages that do not match are acknowledged without calling the handler, and counted.

        `mode="orderly"`: each queue is consumed by one live member at a time, in order; failures
        are retried in place after `suspend` seconds (`allocate` picks the queue-sharing strategy).
        `model="broadcasting"`: every instance gets every message (`instance_id` names it, else a
        per-host slot is claimed); failures are retried `broadcast_retries` times, then recorded
        in the DLQ and skipped.
        """

        def register(handler: H) -> H:
            spec = ConsumerSpec(
                topic=topic,
                group=group,
                handler=handler,
                concurrency=concurrency,
                start=start,
                prefetch=prefetch,
                fetch_batch=fetch_batch,
                visibility_timeout=visibility_timeout,
                retry=retry,
                max_retries=max_retries,
                max_deliveries=max_deliveries,
                timeout=timeout,
                tag=tag,
                sql=sql,
                mode=mode,
                model=model,
                suspend=suspend,
                allocate=allocate,
                instance_id=instance_id,
                broadcast_retries=broadcast_retries,
            )
            if any(s.topic == topic and s.group == group for s in self._specs):
                raise ConsumerError(f"{spec.name} already has a consumer in this app")
            self._specs.append(spec)
            return handler

        return register

    @property
    def consumers(self) -> list[ConsumerSpec]:
        """The registered push consumers."""
        return list(self._specs)

    def transaction_checker(self, *, group: str) -> Callable[[C], C]:
        """Register the decorated function as the check-back of producer group `group`.

        `app.run()` (`rmq worker run`) then answers the group's check-backs, even when the
        process that sent a half message is gone: `check(msg) -> rmq.TransactionState` (sync or
        async; None counts as UNKNOWN) decides whether the message is committed or rolled back.
        """
        validate_group(group)

        def register(checker: C) -> C:
            if not callable(checker):
                raise ConfigError(f"a transaction checker must be callable, got {checker!r}")
            if group in self._checkers:
                raise ConfigError(f"producer group {group!r} already has a transaction checker")
            self._checkers[group] = checker
            return checker

        return register

    @property
    def transaction_checkers(self) -> dict[str, TransactionChecker]:
        """The registered transaction checkers, by producer group."""
        return dict(self._checkers)

    def on_startup(self, hook: K) -> K:
        """Register `hook()` (sync or async) to run once per `app.run()`, that is once per worker
        process, after connecting and before consuming: open what the handlers share there.

        ```python
        @app.on_startup
        async def open_db() -> None:
            app.state.db = await create_pool()
        ```

        Hooks run in registration order; a plain one runs on the event loop (keep it short).
        One that raises stops the worker before it consumes anything (`WorkerStartError`;
        `rmq worker run` exits 4 with the reason), and no shutdown hook runs.
        """
        self._hooks.add(self._hooks.startup, hook, "on_startup")
        return hook

    def on_shutdown(self, hook: K) -> K:
        """Register `hook()` (sync or async) to run once per `app.run()`, after the consumers
        drained and before the connection closes (so it may still send): close what the
        startup hooks opened. Hooks run in reverse registration order; one that raises is
        logged and the others still run."""
        self._hooks.add(self._hooks.shutdown, hook, "on_shutdown")
        return hook

    def select(self, only: Iterable[str] | None) -> list[ConsumerSpec]:
        """The consumers named by `only` (`"topic"`: every consumer of the topic, or
        `"topic/group"`), in registration order; all of them for None.

        Raises `ConfigError` for a malformed name or one that matches no consumer.
        """
        return list(self._specs) if only is None else select_consumers(self._specs, only)

    # ------------------------------------------------------------------ lifecycle

    @property
    def context(self) -> Context:
        """The open connection context; raises if the app is not open."""
        if self._ctx is None:
            raise ProducerClosed("the app is not open: use `async with app:` (or app.run())")
        return self._ctx

    async def __aenter__(self) -> App:
        if self._depth == 0:
            ctx = Context.create(self.settings, client_name=f"rmq:{self.name}")
            try:
                await ctx.conn.open()
                self._ctx = ctx
                await self.declare()
                for producer in self._producers:
                    self._start_checkback(producer)
            except BaseException:
                self._ctx = None
                await ctx.conn.close()
                raise
        self._depth += 1
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if self._depth:
            return
        ctx = self._ctx
        try:
            with anyio.move_on_after(self.settings.send_timeout * 2, shield=True):
                for producer in self._producers:
                    await producer.flush()
        finally:
            self._ctx = None
            if ctx is not None:
                with anyio.CancelScope(shield=True):
                    await self._stop_checkbacks()
                    await self._liveness.close()
                    await ctx.conn.close()

    async def declare(self) -> None:
        """Create the topics (unless strict) and groups of every registered consumer, in a few
        round trips whatever their number."""
        ctx = self.context
        declarations: list[GroupDeclaration] = []
        for spec in self._specs if self._selected is None else self._selected:
            if spec.model == "broadcasting":
                await ctx.topics.ensure(spec.topic)
            else:
                retries = spec.mode == "concurrently"
                declarations.append((spec.topic, spec.group, spec.start, retries, None))
        await declare_groups(ctx, declarations)

    # ------------------------------------------------------------------ producing

    def producer(
        self, group: str | None = None, checker: TransactionChecker | None = None
    ) -> Producer:
        """A producer sharing this app's connection (`group` names it, for transactions).

        With `checker` (`check(msg) -> rmq.TransactionState`), this process answers the group's
        check-backs while the app is open (from `async with app` on, or at once if it is open).
        """
        producer = Producer(lambda: self.context, group, checker)
        self._producers.append(producer)
        if self._ctx is not None:
            self._start_checkback(producer)
        return producer

    def _start_checkback(self, producer: Producer) -> None:
        """Answer `producer`'s check-backs in the background while the app is open."""
        if producer.checker is None or producer.group is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in the app's event loop: it starts when the app is entered
            return
        checkback = CheckBack(self.context, producer.group, producer.checker)
        self._checkbacks.append(loop.create_task(checkback.run()))

    async def _stop_checkbacks(self) -> None:
        tasks, self._checkbacks = self._checkbacks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
        """Send one message and wait until it is stored. See `Producer.send`."""
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        return await self._default_producer.deliver(out)

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
        """Send without waiting; returns an awaitable future. See `Producer.send_async`."""
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        return self._default_producer.deliver_async(out, callback, on_error)

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
        """Fire and forget. See `Producer.send_oneway`."""
        out = Outgoing(topic, body, tag, keys, properties, sharding_key, selector, delay,
                       deliver_at, delay_level)  # fmt: skip
        self._default_producer.deliver_oneway(out)

    async def send_batch(
        self,
        topic: str,
        messages: Sequence[Message | Any],
        *,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
    ) -> list[SendResult]:
        """Send messages to one queue in one round trip. See `Producer.send_batch`."""
        return await self._default_producer.send_batch(
            topic, messages, sharding_key=sharding_key, selector=selector
        )

    async def cancel_delayed(self, topic: str, msg_id: str) -> bool:
        """Cancel a delayed message not delivered yet (RocketMQ 5's recall); False if too late."""
        ctx = self.context
        if not isinstance(msg_id, str) or not msg_id:
            raise ConfigError(f"msg_id must be a non-empty str, got {msg_id!r}")
        info = await ctx.topics.get(validate_topic(topic))
        if info is None:
            return False
        calls = ctx.calls
        cancels = [calls.cancel_delayed(topic, q, msg_id) for q in range(info.queues)]
        cancelled: list[bool] = await calls.results(cancels)
        return any(cancelled)

    def dead_letters(self, topic: str, group: str) -> DeadLetters:
        """The dead-letter queue of `group` on `topic`: count, entries, replay, purge."""
        return DeadLetters(self.context, topic, group)

    async def flush(self) -> None:
        """Wait for every pending async and one-way send of this app's producers."""
        for producer in self._producers:
            await producer.flush()

    def serve_metrics(self, port: int = 9464, host: str = "127.0.0.1") -> MetricsServer:
        """Serve this process's metrics (publish counters, process CPU and memory) on
        http://host:port/metrics from a background thread, until `.close()` or exit.

        For a producer-only process; a web app can mount `rmq.metrics_export.asgi_app()`
        instead. Workers serve theirs with `rmq worker run --metrics-port`.
        """
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
        """A pull consumer (receive / ack / change_invisible_duration) for `topic` in `group`.

        With `tag` ("TagA || TagB") or `sql` (a SQL92 selector over properties), messages that do
        not match are acknowledged without being returned. A message received `max_deliveries`
        times without an ack is dead-lettered instead of being returned again.
        """
        self._pull_consumers += 1
        name = f"{self.name}-p{self._pull_consumers}"
        positions = self._pull_positions.setdefault((topic, group), Positions())
        return PullConsumer(self.context, topic, group, name, start=start, tag=tag, sql=sql,
                            max_deliveries=max_deliveries, positions=positions,
                            liveness=self._liveness)  # fmt: skip

    def stop(self) -> None:
        """Ask `run()` to stop gracefully."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def run(
        self,
        *,
        handle_signals: bool = True,
        only: Iterable[str] | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the registered consumers until `stop()`, SIGTERM or SIGINT, then drain gracefully.

        `only` runs some of them (`"topic"` or `"topic/group"`, see `select`); transaction
        checkers always run. The startup hooks run once the groups are declared, the shutdown
        hooks after the drain (see `on_startup`). A second SIGINT (or SIGTERM) stops at once:
        unfinished messages stay pending for others.
        """
        if not self._specs and not self._checkers:
            raise ConsumerError(
                "no consumers registered: decorate a handler with @app.consumer(...) "
                "(or a transaction checker with @app.transaction_checker(...))"
            )
        selected = self.select(only)
        self._stop_requested = anyio.Event()
        self._selected = selected
        try:
            async with self:
                await self._hooks.run_startup()
                try:
                    with anyio.CancelScope() as force:
                        if not handle_signals:
                            await self._serve(task_status)
                            return
                        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                            async with anyio.create_task_group() as watcher:
                                watcher.start_soon(self._watch_signals, signals, force)
                                await self._serve(task_status)
                                watcher.cancel_scope.cancel()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._hooks.run_shutdown()
        finally:
            self._selected = None
        if force.cancelled_caught:
            log.warning("stopped without draining: unfinished messages stay pending")

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        assert self._stop_requested is not None
        ctx = self.context
        specs = self._specs if self._selected is None else self._selected
        self._consumers = [_runtime(ctx, spec, self.name) for spec in specs]
        push = [c for c in self._consumers if isinstance(c, PushConsumer)]
        others = [c for c in self._consumers if not isinstance(c, PushConsumer)]
        groups_by_topic: dict[str, list[str]] = {}
        for spec in specs:
            retries = spec.mode == "concurrently" and spec.model == "clustering"
            groups_by_topic.setdefault(spec.topic, []).extend([spec.group] if retries else [])
        self.scheduler = Scheduler(ctx, groups_by_topic)
        self.trimmer = Trimmer(ctx, list(groups_by_topic))
        self.push_runtime = PushRuntime(ctx, push)
        checkbacks = [CheckBack(ctx, group, fn) for group, fn in self._checkers.items()]
        await log_startup_warnings(ctx)
        await self._liveness.join(ctx)
        try:
            names = ", ".join(s.name for s in specs) or "nothing"
            await self._serve_all(task_status, names, push, others, checkbacks)
        finally:
            await self._liveness.leave()

    async def _serve_all(
        self,
        task_status: TaskStatus[None],
        names: str,
        push: list[PushConsumer],
        others: list[OrderlyConsumer | BroadcastConsumer],
        checkbacks: list[CheckBack],
    ) -> None:
        assert self._stop_requested is not None
        ctx = self.context
        async with anyio.create_task_group() as services:
            await services.start(self.scheduler.run)
            await services.start(self.trimmer.run)
            for checkback in checkbacks:
                await services.start(checkback.run)
            async with anyio.create_task_group() as tg:
                if push:
                    await tg.start(self.push_runtime.run)
                for consumer in others:
                    await tg.start(consumer.run)
                log.info(
                    "worker %s consuming %s from %s",
                    self.name, names, ctx.conn.url,
                )  # fmt: skip
                if checkbacks:
                    log.info("worker %s checking the transactions of producer group(s) %s",
                             self.name, ", ".join(c.group for c in checkbacks))  # fmt: skip
                task_status.started()
                await self._stop_requested.wait()
                log.info(
                    "stopping: finishing in-flight messages (grace %.0fs)",
                    self.settings.shutdown_grace,
                )
                self.push_runtime.stop()
                for consumer in others:
                    consumer.stop()
            services.cancel_scope.cancel()

    async def _watch_signals(self, signals: AsyncIterator[int], force: anyio.CancelScope) -> None:
        seen = 0
        async for signum in signals:
            seen += 1
            name = signal.Signals(signum).name
            if seen == 1:
                log.info("%s received: draining (send it again to stop at once)", name)
                self.stop()
            else:
                log.warning("%s received again: stopping at once", name)
                force.cancel()
                return

    @property
    def running_consumers(self) -> list[ConsumerRuntime]:
        """The consumer runtimes of the current `run()` (stats live here)."""
        return list(self._consumers)

    # ------------------------------------------------------------------ administration

    @property
    def admin(self) -> Admin:
        """Topic, group, offset and message administration (what the `rmq` CLI runs)."""
        return Admin(lambda: self.context, self._default_producer, self.name, self._liveness)

    async def reset_offset(self, topic: str, group: str, to: Position) -> list[QueueReset]:
        """Move `group` on every queue of `topic` to a time, "first" or "last" (XGROUP SETID).

        Running consumers follow without a restart; pending entries stay pending (still
        delivered again or claimed). See `Admin.reset_offset`.
        """
        return await self.admin.reset_offset(topic, group, to)


ConsumerRuntime = PushConsumer | OrderlyConsumer | BroadcastConsumer


def _runtime(ctx: Context, spec: ConsumerSpec, name: str) -> ConsumerRuntime:
    if spec.model == "broadcasting":
        return BroadcastConsumer(ctx, spec, name)
    if spec.mode == "orderly":
        return OrderlyConsumer(ctx, spec, name)
    return PushConsumer(ctx, spec, name)
