"""Root of the `rmq` command: global options and the command groups."""

from __future__ import annotations

import platform
import sys
from typing import Annotated

import anyio
import orjson
import typer

from rmq import App
from rmq._version import __version__
from rmq.errors import RMQError
from rmq.settings import redact_url, unknown_variables

from . import bench, consume, dlq, doctor, group, message, metrics, send, topic, transaction, worker
from .failsafe import RootGroup
from .options import EXIT_OK, EXIT_USAGE, GlobalOptions
from .output import Output

app = typer.Typer(
    cls=RootGroup,
    name="rmq",
    help="rmq: RocketMQ's producer/consumer model on Redis Streams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(topic.app, name="topic")
app.add_typer(group.app, name="group")
app.add_typer(message.app, name="message")
app.add_typer(dlq.app, name="dlq")
app.add_typer(transaction.app, name="transaction")
app.command("send")(send.send)
app.command("consume")(consume.consume)
app.command("doctor")(doctor.doctor)
app.add_typer(worker.app, name="worker")
app.add_typer(metrics.app, name="metrics")
app.add_typer(bench.app, name="bench")


@app.command("schema")
def schema(
    command: Annotated[
        list[str], typer.Argument(help="The command, e.g. topic status (or: version).")
    ],
) -> None:
    """Print the JSON Schema of a command's --json document."""
    from .schemas import SCHEMAS, schema_for

    try:
        found = schema_for(" ".join(command))
    except KeyError:
        raise typer.BadParameter(
            f"{' '.join(command)!r} prints no JSON document; these do: {', '.join(SCHEMAS)}",
            param_hint="COMMAND",
        ) from None
    typer.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())


def _server_version(options: GlobalOptions) -> tuple[str, dict[str, str] | None]:
    """(redacted URL, server info or None when unreachable), waiting at most about a second."""
    try:
        settings = options.settings().replace(startup_timeout=0.0, connect_timeout=1.0)
    except RMQError:
        return "?", None

    async def probe() -> dict[str, str]:
        with anyio.fail_after(2.0):
            async with App(settings) as rmq_app:
                return await rmq_app.admin.server_info()

    url = redact_url(settings.redis_url)
    try:
        return url, anyio.run(probe)
    except Exception:
        return url, None


def _print_version(options: GlobalOptions) -> None:
    url, server = _server_version(options)
    out = Output(options.json)
    if out.json:
        out.document(
            {
                "rmq": __version__,
                "python": platform.python_version(),
                "server": None if server is None else {**server, "url": url},
            }
        )
        return
    out.line(f"rmq {__version__} (Python {platform.python_version()})")
    if server is None:
        out.line(f"server: not reachable at {url}")
    else:
        out.line(f"server: {server['name']} {server['version']} at {url}")


@app.callback(invoke_without_command=True)
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
        typer.Option("--version", "-V", help="Show the rmq, Python and server versions and exit."),
    ] = False,
) -> None:
    """Administer topics, groups and messages, and run workers."""
    options = GlobalOptions(redis_url=redis_url, namespace=namespace, json=json)
    ctx.obj = options
    if not ctx.resilient_parsing:  # not while completing a word in the shell
        for problem in unknown_variables():
            typer.echo(f"warning: {problem}", err=True)
    if version:
        _print_version(options)
        raise typer.Exit(EXIT_OK)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(EXIT_USAGE)


def main() -> None:
    """Entry point of the `rmq` console script."""
    sys.exit(app())
