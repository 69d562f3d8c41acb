"""`rmq worker run module:app` and `rmq worker check module:app`."""

from __future__ import annotations

import difflib
import importlib
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from rmq import App
from rmq.context import Context
from rmq.errors import BrokerUnavailable, ConfigError, RMQError, WorkerStartError
from rmq.health import STALE_INTERVALS, alive_members, heartbeat_key
from rmq.logging import FORMATS, configure
from rmq.runner import RunOptions, Supervisor, run_worker

from .options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_START,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    JsonOption,
    global_options,
)
from .runtime import fail, loop_options, output, settings_for

app = typer.Typer(help="Run worker processes and check their health.", no_args_is_help=True)

TargetArg = Annotated[
    str, typer.Argument(help="The app, as module:attribute (attribute defaults to app).")
]
FactoryOption = Annotated[
    bool,
    typer.Option(
        "--factory",
        help="The target is a callable (no arguments) that returns the App: module:create_app.",
    ),
]


def app_id(target: str) -> str:
    """`module:attribute`, with the default attribute filled in."""
    module_name, _, attribute = target.partition(":")
    return f"{module_name}:{attribute or 'app'}"


def load_app(target: str, factory: bool = False) -> App:
    """Import `module:attribute` (the current directory is importable) and return the App
    (with `factory`, the App that calling the attribute returns)."""
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise typer.BadParameter(f"expected module:app, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    except RMQError as exc:  # e.g. rmq.App() at import time with a bad RMQ_* variable
        fail(f"cannot load {target}: {exc}", EXIT_USAGE)
    name = attribute or "app"
    if not hasattr(module, name):
        apps = sorted(k for k, v in vars(module).items() if isinstance(v, App))
        close = difflib.get_close_matches(name, apps or list(vars(module)), n=1)
        hint = (
            f"; did you mean {module_name}:{close[0]}?" if close and close[0] in apps
            else f"; its rmq.App objects: {', '.join(apps)}" if apps
            else "; it defines no rmq.App"
        )  # fmt: skip
        raise typer.BadParameter(f"module {module_name!r} has no attribute {name!r}{hint}")
    obj = getattr(module, name)
    if factory:
        if not callable(obj):
            raise typer.BadParameter(f"--factory: {target!r} is not callable")
        try:
            obj = obj()
        except RMQError as exc:
            fail(f"cannot load {target}: the factory raised {exc}", EXIT_USAGE)
        except Exception as exc:  # the user's code: one line, never a traceback
            fail(f"cannot load {target}: the factory raised {type(exc).__name__}: {exc}",
                 EXIT_USAGE)  # fmt: skip
        if not isinstance(obj, App):
            raise typer.BadParameter(
                f"--factory: {target}() returned {type(obj).__name__}, not an rmq.App"
            )
        return obj
    if not isinstance(obj, App):
        hint = " (use --factory if it returns one)" if callable(obj) else ""
        raise typer.BadParameter(f"{target!r} is not an rmq.App (got {type(obj).__name__}){hint}")
    return obj


def _apply_options(ctx: typer.Context, rmq_app: App, concurrency: int | None) -> None:
    overrides: dict[str, object] = dict(global_options(ctx).overrides())
    if concurrency is not None:
        overrides["concurrency"] = concurrency
    if overrides:
        try:
            rmq_app.settings = rmq_app.settings.replace(**overrides)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)


@app.command("run")
def run(
    ctx: typer.Context,
    target: TargetArg,
    processes: Annotated[
        int,
        typer.Option("--processes", "-p", min=1, envvar="RMQ_PROCESSES", help="Worker processes."),
    ] = 1,
    concurrency: Annotated[
        int | None, typer.Option(help="Handler concurrency per consumer.", min=1)
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(envvar="RMQ_METRICS_PORT", min=0, max=65535, help="Serve /metrics here."),
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            envvar="RMQ_HEALTH_PORT", min=0, max=65535, help="Serve /healthz and /readyz here."
        ),
    ] = None,
    bind: Annotated[
        str, typer.Option(envvar="RMQ_BIND", help="Address the HTTP ports listen on.")
    ] = "127.0.0.1",
    export_state: Annotated[
        bool,
        typer.Option(
            "--export-state/--no-export-state",
            envvar="RMQ_EXPORT_STATE",
            help="Also serve the Redis-state gauges (lag, pending, DLQ, ...) on /metrics: for a "
            "single deployment without `rmq metrics serve` (each endpoint adds one more copy).",
        ),
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            envvar="RMQ_LOG_LEVEL", help="Log level: DEBUG, INFO, WARNING, ERROR, CRITICAL."
        ),
    ] = "INFO",
    log_format: Annotated[
        str, typer.Option(envvar="RMQ_LOG_FORMAT", help=f"Log format: {' or '.join(FORMATS)}.")
    ] = "text",
    loop: Annotated[
        str,
        typer.Option(
            envvar="RMQ_EVENT_LOOP",
            help="Event loop: auto (uvloop when installed), uvloop or asyncio.",
        ),
    ] = "auto",
    factory: FactoryOption = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="TOPIC[/GROUP]",
            help="Run only this topic's consumers (or this one group); repeatable.",
        ),
    ] = None,
    burst: Annotated[
        bool,
        typer.Option(
            "--burst",
            help="Exit 0 once the consumers' queues hold nothing to do now (after draining): "
            "for batch jobs and CI. Retries and delayed messages not due yet are left.",
        ),
    ] = False,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload",
            help="Restart the worker when a .py file of the app's package changes "
            "(for development).",
        ),
    ] = False,
    reload_delay: Annotated[
        float, typer.Option(min=0.05, help="--reload: seconds between two looks at the files.")
    ] = 0.5,
    supervised: Annotated[bool, typer.Option(hidden=True)] = False,
    failure_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the app's consumers until SIGTERM or SIGINT, then drain gracefully and exit 0.

    With --processes N > 1 a supervisor runs N worker processes, restarts crashed ones, forwards
    signals (a second SIGINT forces the stop) and serves one /metrics for all of them. /metrics
    shows the workers' own series; the Redis state comes from `rmq metrics serve` (once per
    Redis), or from here with --export-state.

    An app that cannot start exits 4 (3 when Redis is unreachable) with the reason on stderr;
    the supervisor does not restart it, and exits the same way.

    --only runs some consumers, --burst exits once they have nothing left to do, --factory
    calls the target for the App, and --reload restarts on code changes.
    """
    try:
        configure(log_level, log_format)
    except (ConfigError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    backend = loop_options(loop)
    if reload and not supervised:
        _reload(ctx, target, reload_delay)
    rmq_app = load_app(target, factory)
    _apply_options(ctx, rmq_app, concurrency)
    if not rmq_app.consumers and not rmq_app.transaction_checkers:
        fail(f"{target} registers no consumers and no transaction checkers", EXIT_USAGE)
    if only:
        try:
            rmq_app.select(only)
        except ConfigError as exc:
            fail(f"--only: {exc}", EXIT_USAGE)
    options = RunOptions(
        app_id=app_id(target), processes=processes, metrics_port=metrics_port,
        health_port=health_port, bind=bind, supervised=supervised, export_state=export_state,
        only=tuple(only) if only else None, burst=burst,
    )  # fmt: skip
    try:
        if processes > 1 and not supervised:
            supervisor = _supervisor(
                rmq_app, options, concurrency, log_level, log_format, loop, factory
            )
            code = anyio.run(supervisor.run, backend_options=backend)
            if supervisor.failure is not None:
                fail(supervisor.failure, code)
            raise typer.Exit(code)
        anyio.run(run_worker, rmq_app, options, backend_options=backend)
    except WorkerStartError as exc:
        if exc.unavailable:
            fail(str(exc), EXIT_UNAVAILABLE)
        if failure_file is not None:  # supervised: the supervisor reports it, once
            failure_file.write_text(str(exc) + "\n", encoding="utf-8")
            raise typer.Exit(EXIT_START) from None
        fail(str(exc), EXIT_START)
    except BrokerUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except RMQError as exc:
        fail(str(exc), EXIT_FAILURE)
    except OSError as exc:
        fail(f"cannot listen on {bind}: {exc.strerror or exc}", EXIT_START)
    raise typer.Exit(EXIT_OK)


def _reload(ctx: typer.Context, target: str, interval: float) -> None:
    """`--reload`: run this same command without --reload in a child, restarted on changes."""
    from rmq.reload import Reloader

    args = _without_reload(ctx)
    command = [sys.executable, "-m", "rmq", *_global_args(ctx), "worker", "run", *args]
    settings = settings_for(ctx)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        reloader = Reloader(
            target.partition(":")[0], command, interval=interval, grace=settings.shutdown_grace
        )
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    raise typer.Exit(anyio.run(reloader.run))


def _without_reload(ctx: typer.Context) -> list[str]:
    """The arguments of this `worker run`, as given on the command line, without --reload (the
    environment variables reach the child as they are)."""
    positional: list[str] = []
    options: list[str] = []
    params: list[Any] = list(ctx.command.params)
    for param in params:
        name = param.name
        if name is None or name in _NOT_FOR_THE_CHILD:
            continue
        value = ctx.params.get(name)
        if param.param_type_name == "argument":
            positional.append(str(value))
            continue
        source = ctx.get_parameter_source(name)
        if getattr(source, "name", None) != "COMMANDLINE":  # typer's click or click itself
            continue
        if param.is_flag:
            flag = param.opts[0] if value or not param.secondary_opts else param.secondary_opts[0]
            options.append(flag)
        elif param.multiple:
            for item in value or ():
                options += [param.opts[0], str(item)]
        else:
            options += [param.opts[0], str(value)]
    return positional + options


_NOT_FOR_THE_CHILD = {"reload", "reload_delay", "supervised", "failure_file"}


def _global_args(ctx: typer.Context) -> list[str]:
    options = global_options(ctx)
    out: list[str] = []
    if options.redis_url:
        out += ["--redis-url", options.redis_url]
    if options.namespace:
        out += ["--namespace", options.namespace]
    return out


def _supervisor(
    rmq_app: App,
    options: RunOptions,
    concurrency: int | None,
    level: str,
    fmt: str,
    loop: str,
    factory: bool,
) -> Supervisor:
    command = [sys.executable, "-m", "rmq", "worker", "run", options.app_id, "--supervised"]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    command += ["--log-level", level, "--log-format", fmt, "--loop", loop]
    if factory:
        command.append("--factory")
    for name in options.only or ():
        command += ["--only", name]
    if options.burst:
        command.append("--burst")
    settings = rmq_app.settings
    env = {
        **os.environ,
        "RMQ_REDIS_URL": settings.redis_url,
        "RMQ_NAMESPACE": settings.namespace,
        "RMQ_PROCESSES": "1",
    }
    for name in ("RMQ_METRICS_PORT", "RMQ_HEALTH_PORT", "RMQ_EXPORT_STATE"):
        env.pop(name, None)
    return Supervisor(settings, options, command, env)


@app.command("check")
def check(ctx: typer.Context, target: TargetArg, json: JsonOption = False) -> None:
    """Exit 0 when a worker process of the app on this host is alive, else 1.

    For container health checks: reads the workers' heartbeats in Redis, no port needed.
    """
    rmq_app = load_app(target)
    _apply_options(ctx, rmq_app, None)
    settings = rmq_app.settings.replace(startup_timeout=0.0)
    key = heartbeat_key(settings.namespace, app_id(target))
    host = socket.gethostname()

    async def alive() -> list[str]:
        ctx_ = Context.create(settings, client_name="rmq:check")
        try:
            await ctx_.conn.open()
            return await alive_members(
                ctx_.conn.commands, key, settings.heartbeat_interval, host=host
            )
        finally:
            await ctx_.conn.close()

    out = output(ctx, json)
    try:
        members = anyio.run(alive)
        problem = None if members else (
            f"no worker process of {app_id(target)} on {host} beat in the last "
            f"{STALE_INTERVALS * settings.heartbeat_interval:g}s"
        )  # fmt: skip
    except RMQError as exc:
        members, problem = [], f"Redis unreachable: {exc}"
    if out.json:
        out.document(
            {"app": app_id(target), "host": host, "healthy": problem is None, "alive": members,
             "problem": problem}
        )  # fmt: skip
    elif problem is None:
        out.line(f"ok: {len(members)} worker process(es) of {app_id(target)} alive on {host}")
    if problem is not None:
        fail(problem, EXIT_FAILURE)
    raise typer.Exit(EXIT_OK)
