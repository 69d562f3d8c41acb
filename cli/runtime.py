"""Running a command's coroutine against Redis, with errors mapped to the named exit codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import anyio
import typer

from rmq import App
from rmq.admin import Admin
from rmq.errors import BrokerUnavailable, ConfigError, RMQError
from rmq.settings import Settings, redact_url

from .options import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, global_options
from .output import Output, error

T = TypeVar("T")


LOOPS = ("auto", "uvloop", "asyncio")


def loop_options(loop: str = "auto") -> dict[str, Any]:
    """anyio's backend options for event loop `loop`: uvloop when asked for, or with "auto" when
    it is installed (it is a dependency on Linux and macOS); plain asyncio otherwise."""
    if loop not in LOOPS:
        fail(f"--loop must be one of {', '.join(LOOPS)}, got {loop!r}", EXIT_USAGE)
    if loop == "asyncio":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if loop == "uvloop":
            fail("--loop uvloop: uvloop is not installed (pip install uvloop)", EXIT_USAGE)
        return {}
    return {"use_uvloop": True}


def single(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one error inside `group` (nested groups of one unwrapped), else the group itself."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print `message` on stderr and exit with `code`."""
    error(message)
    raise typer.Exit(code)


def settings_for(ctx: typer.Context) -> Settings:
    """The settings of this invocation (RMQ_* variables and the global options)."""
    try:
        return global_options(ctx).settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def output(ctx: typer.Context, json: bool = False) -> Output:
    """Where the command prints: JSON with `--json` (before or after the command name)."""
    return Output(json or global_options(ctx).json)


def run_admin(
    ctx: typer.Context,
    command: Callable[[Admin], Awaitable[T]],
    *,
    interruptible: bool = False,
) -> T:
    """Open an App (no consumers), run `command(app.admin)`, and exit with the right code on error.

    BrokerUnavailable exits 3, bad names and settings 2, other rmq errors 1. With
    `interruptible`, Ctrl-C ends the command normally (exit 0).
    """
    settings = settings_for(ctx)

    async def main() -> T:
        async with App(settings) as app:
            return await command(app.admin)

    try:
        return anyio.run(main)
    except KeyboardInterrupt:
        if interruptible:
            raise typer.Exit(EXIT_OK) from None
        fail("interrupted")
    except BrokerUnavailable as exc:
        fail(f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}", EXIT_UNAVAILABLE)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except RMQError as exc:
        fail(str(exc))


def confirm(question: str, yes: bool) -> None:
    """Ask on stderr before a destructive action, unless `--yes`; no answer means no."""
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:
        agreed = False
    if not agreed:
        fail("aborted: nothing was changed (pass --yes to skip this question)")
