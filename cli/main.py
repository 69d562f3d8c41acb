"""Root of the `rmq` command: global options and the command groups."""

from __future__ import annotations

import platform
import sys
from typing import Annotated

import typer

from rmq._version import __version__

from . import worker
from .options import EXIT_OK, GlobalOptions

app = typer.Typer(
    name="rmq",
    help="rmq: RocketMQ's producer/consumer model on Redis Streams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(worker.app, name="worker")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rmq {__version__} (Python {platform.python_version()})")
        raise typer.Exit(EXIT_OK)


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url", "-u", envvar="RMQ_REDIS_URL", help="Redis URL.", show_default=False
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", envvar="RMQ_NAMESPACE", help="Key namespace (default rmq)."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Show versions and exit."
        ),
    ] = False,
) -> None:
    """Administer topics, groups and messages, and run workers."""
    ctx.obj = GlobalOptions(redis_url=redis_url, namespace=namespace, json=json)


def main() -> None:
    """Entry point of the `rmq` console script."""
    sys.exit(app())
