"""`rmq worker run module:app`: run an app's consumers until SIGTERM/SIGINT."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Annotated

import anyio
import typer

from rmq import App
from rmq.errors import BrokerUnavailable, RMQError

from .options import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, global_options

app = typer.Typer(help="Run worker processes.", no_args_is_help=True)


def load_app(target: str) -> App:
    """Import `module:attribute` (the current directory is importable) and return the App."""
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise typer.BadParameter(f"expected module:app, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    obj = getattr(module, attribute or "app", None)
    if not isinstance(obj, App):
        raise typer.BadParameter(f"{target!r} is not an rmq.App (got {type(obj).__name__})")
    return obj


@app.command("run")
def run(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="The app to run, as module:attribute.")],
    concurrency: Annotated[
        int | None, typer.Option(help="Handler concurrency per consumer.", min=1)
    ] = None,
    log_level: Annotated[str, typer.Option(envvar="RMQ_LOG_LEVEL", help="Log level.")] = "INFO",
) -> None:
    """Run the app's consumers until SIGTERM or SIGINT, then drain gracefully and exit 0."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    rmq_app = load_app(target)
    overrides: dict[str, object] = dict(global_options(ctx).overrides())
    if concurrency is not None:
        overrides["concurrency"] = concurrency
    try:
        if overrides:
            rmq_app.settings = rmq_app.settings.replace(**overrides)
        if not rmq_app.consumers:
            typer.echo(f"error: {target} registers no consumers", err=True)
            raise typer.Exit(EXIT_USAGE)
        anyio.run(rmq_app.run)
    except BrokerUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except RMQError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    raise typer.Exit(EXIT_OK)
