"""The worker runner behind `rmq worker run module:app`.

- `run_worker(app, options)`: one worker process. It runs the app's consumers until SIGTERM or
  SIGINT (then drains; a second signal stops at once), keeps a heartbeat in Redis (see
  `rmq.health`), and serves `/metrics`, `/healthz` and `/readyz` when given ports. An app that
  cannot start (before it consumes anything) raises `WorkerStartError` with the reason.
- `Supervisor`: with `--processes N > 1`, starts N worker processes (`--supervised` children in
  their own process group), restarts one that crashes after a backoff (`restart_delay`, doubling
  up to `restart_delay_cap`), forwards SIGTERM/SIGINT for a graceful drain (a second signal is
  forwarded too and forces the children to stop; a third kills them), and exits 0 when every
  child drained cleanly. It serves one `/metrics` for all children (prometheus_client's
  multiprocess mode, in a directory it wipes at start), with `process_*` per child.
  A child that cannot start (it writes why to its `--failure-file` and exits) is not restarted:
  restarting cannot help, so the supervisor drains the others and exits with that child's code
  and reason (`Supervisor.failure`). A child that could not reach Redis is restarted.

`/metrics` shows the workers' own series; the Redis-state gauges (lag, pending, DLQ, ...) only
with `export_state` (`--export-state`), for a single deployment that runs no `rmq metrics serve`:
every endpoint that exports them adds one more copy of each gauge.

Readiness (`/readyz`): the app started, Redis answers, and no loop of the app is stuck: a round
trip past its deadline, or round trips failing for longer than a blocking read may take
(`RedisConnection.stalled`). A stuck worker also stops beating, so the supervisor's `/readyz` and
`rmq worker check` see it too.

A supervised child stops gracefully by itself if its supervisor dies.

`--only TOPIC[/GROUP]` runs some of the app's consumers (`App.run(only=...)`). `--burst` stops a
worker once the queues of its consumers hold nothing to do now (nothing unread, nothing pending:
`rmq.testing.wait_until_idle` with `scheduled=False`, so retries waiting for their backoff and
delayed messages not due yet are left for the next run), drains and exits 0; a supervisor does not
restart a burst child that exited 0, and exits when all of them did. `--reload` is
`rmq.reload.Reloader`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
from anyio.abc import Process, TaskGroup, TaskStatus

from . import metrics, metrics_export
from .app import App
from .connection import Backoff
from .context import Context
from .errors import BrokerUnavailable, ProducerClosed, RMQError, WorkerStartError
from .health import Heartbeat, alive_members, heartbeat_key, member_name
from .httpserver import Response, Route, serve, text
from .metrics_state import StateCollector
from .settings import Settings

__all__ = ["RunOptions", "Supervisor", "run_worker", "start_error"]

log = logging.getLogger("rmq.runner")

_PARENT_POLL_SECONDS = 1.0
_KILL_MARGIN_SECONDS = 5.0
_HEALTHY_RUN_SECONDS = 60.0
_BURST_POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run workers (the options of `rmq worker run`)."""

    app_id: str
    """The app as `module:attribute`; it names the heartbeat key."""
    processes: int = 1
    metrics_port: int | None = None
    health_port: int | None = None
    bind: str = "127.0.0.1"
    supervised: bool = False
    export_state: bool = False
    """Also serve the Redis-state gauges on /metrics (once per Redis: see the module doc)."""
    only: tuple[str, ...] | None = None
    """The consumers to run (`topic` or `topic/group`); None: all of them."""
    burst: bool = False
    """Exit (0, after draining) once the consumers have nothing left to do now."""


def start_error(app_id: str, exc: RMQError) -> WorkerStartError:
    """`exc` (raised while starting `app_id`) as a one-line `WorkerStartError`."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    error = WorkerStartError(
        f"cannot start {app_id}: {reason}", unavailable=isinstance(exc, BrokerUnavailable)
    )
    error.__cause__ = exc
    return error


async def _open_ops(settings: Settings, name: str) -> Context:
    """A connection of its own for heartbeats, health and metrics (independent of the app's)."""
    ctx = Context.create(settings, client_name=f"rmq:{name}:ops")
    try:
        await ctx.conn.open()
    except BaseException:
        await ctx.conn.close()
        raise
    return ctx


@contextmanager
def _unwrapped() -> Iterator[None]:
    """Re-raise a task group's single error as itself (callers catch rmq errors by type)."""
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from group


async def _healthz() -> Response:
    return text(200, "ok\n")


async def _redis_ok(ctx: Context) -> bool:
    try:
        with anyio.fail_after(ctx.settings.connect_timeout):
            return bool(await ctx.conn.commands.ping())
    except Exception:
        return False


async def _start_http(
    tg: TaskGroup, options: RunOptions, metrics_route: Route, health: Mapping[str, Route]
) -> None:
    """Start the metrics and health servers (one server when both ports are equal)."""
    servers: dict[int, dict[str, Route]] = {}
    if options.metrics_port is not None:
        servers.setdefault(options.metrics_port, {})["/metrics"] = metrics_route
    if options.health_port is not None:
        servers.setdefault(options.health_port, {}).update(health)
    for port, routes in servers.items():
        await tg.start(partial(serve, options.bind, port, routes))


# ---------------------------------------------------------------------- one process


def _stuck(app: App) -> str | None:
    """Why `app`'s loops cannot reach Redis, or None (see `RedisConnection.stalled`)."""
    try:
        return app.context.conn.stalled()
    except ProducerClosed:
        return "the app is closed"


async def run_worker(app: App, options: RunOptions) -> None:
    """Run `app`'s consumers in this process until a signal (or `app.stop()`) and a drain.

    Raises `WorkerStartError` when the app cannot start (nothing was consumed).
    """
    try:
        ops = await _open_ops(app.settings, app.name)
    except RMQError as exc:
        raise start_error(options.app_id, exc) from exc
    ready = anyio.Event()
    state = StateCollector(ops) if options.export_state else None
    exposition = metrics_export.Exposition(state=state, directory=metrics_export.multiprocess_dir())

    async def readyz() -> Response:
        if not ready.is_set():
            return text(503, "starting: consumer groups not declared yet\n")
        problem = _stuck(app)
        if problem is not None:
            return text(503, f"stuck: {problem}\n")
        if not await _redis_ok(ops):
            return text(503, "Redis unreachable\n")
        return text(200, "ready\n")

    for spec in app.consumers:
        metrics.register_consumer(spec.topic, spec.group)
    try:
        with _unwrapped():
            async with anyio.create_task_group() as tg:
                if not options.supervised:
                    await _start_http(
                        tg, options, exposition.route, {"/healthz": _healthz, "/readyz": readyz}
                    )
                try:
                    await tg.start(partial(_run_app, app, tg, options.only))
                except RMQError as exc:
                    raise start_error(options.app_id, exc) from exc
                ready.set()
                tg.start_soon(Heartbeat(ops, options.app_id, partial(_stuck, app)).run)
                if options.supervised:
                    tg.start_soon(_watch_parent, app, os.getppid())
                if options.burst:
                    tg.start_soon(_stop_when_idle, app, options.only)
    finally:
        with anyio.CancelScope(shield=True):
            await ops.conn.close()


class _Started:
    """A task status that remembers whether `started()` was called."""

    def __init__(self, status: TaskStatus[None]) -> None:
        self.status = status
        self.done = False

    def started(self, value: None = None) -> None:
        self.done = True
        self.status.started(value)


async def _run_app(
    app: App, tg: TaskGroup, only: Sequence[str] | None, *, task_status: TaskStatus[None]
) -> None:
    """Run the app; when it returns (drained), stop the heartbeat and the servers.

    An app that fails before it started raises to `tg.start()` (cancelling the task group first
    would lose that error).
    """
    status = _Started(task_status)
    try:
        await app.run(only=only, task_status=status)
    except BaseException:
        if status.done:
            tg.cancel_scope.cancel()
        raise
    tg.cancel_scope.cancel()


async def _stop_when_idle(app: App, only: Sequence[str] | None) -> None:
    """`--burst`: stop (drain, exit 0) once the consumers have nothing to do now."""
    from .testing.idle import wait_until_idle

    await wait_until_idle(
        app, timeout=math.inf, only=only, scheduled=False, poll=_BURST_POLL_SECONDS
    )
    log.info("burst: nothing left to consume, draining and exiting")
    app.stop()


async def _watch_parent(app: App, parent: int) -> None:
    """Stop gracefully when the supervisor is gone (this process was re-parented)."""
    while os.getppid() == parent:  # noqa: ASYNC110 (no event tells about a parent's death)
        await anyio.sleep(_PARENT_POLL_SECONDS)
    log.warning("the supervisor (pid %d) is gone: draining and exiting", parent)
    app.stop()


# ---------------------------------------------------------------------- supervisor


class Supervisor:
    """Runs `processes` copies of `command` (a supervised `rmq worker run`) and supervises them."""

    def __init__(
        self,
        settings: Settings,
        options: RunOptions,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.command = list(command)
        self.env = dict(os.environ if env is None else env)
        self.processes: dict[int, Process] = {}
        self.exit_codes: dict[int, int] = {}
        self.restarts = 0
        self.failure: str | None = None
        """Why a worker process could not start (then `run` returns its exit code)."""
        self._failure_code = 0
        self._stop = anyio.Event()
        self._signals = 0
        self._own_dir = False
        self.directory = ""
        self._failures = ""
        self._tg: TaskGroup | None = None

    @property
    def stopping(self) -> bool:
        """True once a stop signal arrived."""
        return self._stop.is_set()

    async def run(self) -> int:
        """Supervise until a signal and a drain; returns the exit code (0: every child drained;
        a child's own code when it could not start, with `failure` saying why).

        Raises `WorkerStartError` when the supervisor itself cannot reach or use Redis.
        """
        try:
            ops = await _open_ops(self.settings, f"{socket.gethostname()}-{os.getpid()}")
        except RMQError as exc:
            raise start_error(self.options.app_id, exc) from exc
        self._failures = tempfile.mkdtemp(prefix="rmq-start-")
        try:
            self.directory = self._metrics_dir()
            env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": self.directory}
            exposition = metrics_export.Exposition(
                state=StateCollector(ops) if self.options.export_state else None,
                directory=self.directory,
                processes=self._pids,
            )

            async def readyz() -> Response:
                return await self._readyz(ops)

            with _unwrapped():
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    routes = {"/healthz": _healthz, "/readyz": readyz}
                    await _start_http(tg, self.options, exposition.route, routes)
                    tg.start_soon(self._watch_signals, tg)
                    async with anyio.create_task_group() as slots:
                        for index in range(self.options.processes):
                            slots.start_soon(self._slot, index, env)
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await ops.conn.close()
            if self._own_dir:
                shutil.rmtree(self.directory, ignore_errors=True)
            shutil.rmtree(self._failures, ignore_errors=True)
        if self.failure is not None:
            log.error("stopped: %s", self.failure)
            return self._failure_code or 1
        clean = all(code == 0 for code in self.exit_codes.values())
        log.info("all worker processes exited (%s)", "clean drain" if clean else "not clean")
        return 0 if clean else 1

    async def _readyz(self, ops: Context) -> Response:
        """Ready: not stopping, Redis answers, and every worker process beats (it consumes)."""
        if self.stopping:
            return text(503, "stopping\n")
        if not await _redis_ok(ops):
            return text(503, "Redis unreachable\n")
        key = heartbeat_key(self.settings.namespace, self.options.app_id)
        interval = self.settings.heartbeat_interval
        host = socket.gethostname()
        alive = set(await alive_members(ops.conn.commands, key, interval, host=host))
        expected = {member_name(p.pid) for p in self.processes.values()}
        if len(expected) < self.options.processes or not expected <= alive:
            return text(503, f"{len(expected & alive)}/{self.options.processes} ready\n")
        return text(200, "ready\n")

    def _pids(self) -> dict[str, int | str]:
        """The processes whose CPU and memory /metrics shows: this one and every child."""
        pids: dict[str, int | str] = {"supervisor": "self"}
        pids.update((str(index), proc.pid) for index, proc in sorted(self.processes.items()))
        return pids

    def _metrics_dir(self) -> str:
        given = self.env.get("PROMETHEUS_MULTIPROC_DIR")
        if not given:
            self._own_dir = True
            return tempfile.mkdtemp(prefix="rmq-metrics-")
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return str(path)

    async def _slot(self, index: int, env: dict[str, str]) -> None:
        backoff = Backoff(self.settings.restart_delay, self.settings.restart_delay_cap)
        failure_file = Path(self._failures) / f"{index}.failure"
        command = [*self.command, "--failure-file", str(failure_file)]
        while not self._stop.is_set():
            failure_file.unlink(missing_ok=True)
            proc = await anyio.open_process(
                command, env=env, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
                start_new_session=True,
            )  # fmt: skip
            self.processes[index] = proc
            if self._stop.is_set():  # the stop signal came while this child was starting
                proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            log.info("worker process %d started (pid %d)", index, proc.pid)
            try:
                code = await proc.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                    self.processes.pop(index, None)
                    metrics_export.process_dead(proc.pid, self.directory)
            if self._stop.is_set() or (self.options.burst and code == 0):
                if self._stop.is_set() and code == -signal.SIGTERM and self._signals <= 1:
                    # the forwarded SIGTERM came before the child installed its handler: it had
                    # not started consuming, so nothing was in flight
                    log.info("worker process %d (pid %d) stopped while starting", index, proc.pid)
                    code = 0
                self.exit_codes[index] = code
                log.info("worker process %d (pid %d) exited with %d", index, proc.pid, code)
                return
            reason = _read_failure(failure_file)
            if reason is not None:  # it cannot start: restarting would fail the same way
                self.exit_codes[index] = code
                self._give_up(f"worker process {index} {reason}", code)
                return
            if time.monotonic() - started > _HEALTHY_RUN_SECONDS:
                backoff.reset()
            delay = backoff.next_delay()
            self.restarts += 1
            log.warning(
                "worker process %d (pid %d) exited with %d; restarting in %.1fs",
                index, proc.pid, code, delay,
            )  # fmt: skip
            with anyio.move_on_after(delay):
                await self._stop.wait()

    def _give_up(self, failure: str, code: int) -> None:
        """A child cannot start: drain the others and stop (exit with `code`)."""
        if self.failure is None:
            self.failure, self._failure_code = failure, code
        if self._stop.is_set():
            return
        log.error("%s; not restarting it: stopping the other worker processes", failure)
        self._stop.set()
        self._forward(signal.SIGTERM)
        if self._tg is not None:
            self._tg.start_soon(self._kill_late)

    async def _watch_signals(self, tg: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self._signals += 1
                signum = signal.Signals(signum)
                name = signum.name
                if self._signals == 1:
                    log.info("%s received: draining the worker processes", name)
                    self._stop.set()
                    self._forward(signum)
                    tg.start_soon(self._kill_late)
                elif self._signals == 2:
                    log.warning("%s received again: the worker processes stop at once", name)
                    self._forward(signum)
                else:
                    log.warning("%s received a third time: killing the worker processes", name)
                    self._forward(signal.SIGKILL)

    async def _kill_late(self) -> None:
        await anyio.sleep(self.settings.shutdown_grace + _KILL_MARGIN_SECONDS)
        if self.processes:
            log.error("worker processes still running after the grace period: killing them")
            self._forward(signal.SIGKILL)

    def _forward(self, signum: signal.Signals) -> None:
        for proc in list(self.processes.values()):
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass


def _read_failure(path: Path) -> str | None:
    """The start failure a child wrote to `path` (one line), or None."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    return " ".join(text.split()) or None
