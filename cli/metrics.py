"""`rmq metrics serve`: a standalone exporter of the Redis state (lag, pending, DLQ, ...)."""

from __future__ import annotations

import signal
from functools import partial
from typing import Annotated

import anyio
import typer

from rmq.context import Context
from rmq.errors import BrokerUnavailable, ConfigError, RMQError
from rmq.httpserver import Response, Route, serve, text
from rmq.logging import LEVELS, configure
from rmq.metrics_export import Exposition
from rmq.metrics_state import StateCollector
from rmq.settings import Settings

from .options import EXIT_FAILURE, EXIT_OK, EXIT_START, EXIT_UNAVAILABLE, EXIT_USAGE
from .runtime import fail, settings_for, single

app = typer.Typer(help="Prometheus metrics.", no_args_is_help=True)


async def _serve(settings: Settings, bind: str, port: int) -> None:
    ctx = Context.create(settings, client_name="rmq:exporter")
    await ctx.conn.open()
    exposition = Exposition(state=StateCollector(ctx), in_process=False)

    async def healthz() -> Response:
        return text(200, "ok\n")

    try:
        async with anyio.create_task_group() as tg:
            routes: dict[str, Route] = {"/metrics": exposition.route, "/healthz": healthz}
            await tg.start(partial(serve, bind, port, routes))
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await ctx.conn.close()


@app.command("serve")
def serve_(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option(envvar="RMQ_METRICS_PORT", min=0, max=65535, help="Port of /metrics.")
    ] = 9464,
    bind: Annotated[str, typer.Option(envvar="RMQ_BIND", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    log_level: Annotated[
        str, typer.Option(envvar="RMQ_LOG_LEVEL", help=f"Log level: {', '.join(LEVELS)}.")
    ] = "INFO",
) -> None:
    """Serve the Redis state as Prometheus gauges (a standalone exporter).

    Lag, pending, oldest pending age, stream, delayed, retry and DLQ lengths are read at each
    scrape, until SIGTERM or SIGINT. Run one per Redis (each one serving them adds a copy of
    every gauge); workers export their own counters.
    """
    try:
        configure(log_level)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    settings = settings_for(ctx)
    try:
        try:
            anyio.run(_serve, settings, bind, port)
        except BaseExceptionGroup as group:
            raise single(group) from None
    except BrokerUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except RMQError as exc:
        fail(str(exc), EXIT_FAILURE)
    except OSError as exc:
        fail(f"cannot listen on {bind}:{port}: {exc.strerror or exc}", EXIT_START)
    raise typer.Exit(EXIT_OK)
