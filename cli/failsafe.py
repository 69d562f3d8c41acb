"""The root command group: whatever goes wrong ends as one line on stderr and a named exit code.

Usage errors (a bad option value, a missing argument) print `error: <what> (rmq <command> --help
shows the usage)` and exit 2 instead of typer's usage box; an rmq error that escaped a command
exits with its code from `exit_code_for`; anything else exits 1 with the exception's type and
text on one line, never a traceback. `no_args_is_help` still prints the help.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from rmq.errors import BrokerUnavailable, ConfigError, RMQError

from .options import EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE

__all__ = ["RootGroup", "exit_code_for", "one_line"]

try:  # typer's vendored click names it; an older click may not have it
    from typer._click.exceptions import NoArgsIsHelpError
except ImportError:  # pragma: no cover
    NoArgsIsHelpError = ()  # type: ignore[assignment,misc]


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) collapsed to one space."""
    return " ".join(str(text).split())


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an rmq error: 3 unreachable, 2 bad settings or arguments, else 1."""
    if isinstance(exc, BrokerUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _usage_hint(exc: BaseException) -> str:
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "rmq"
    return f" ({path} --help shows the usage)"


class RootGroup(TyperGroup):
    """A TyperGroup whose `main` never lets an exception or a usage box reach the terminal."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = (args, prog_name, complete_var, False, windows_expand_args)
        if not standalone_mode:
            return super().main(*run, **extra)
        try:
            code = super().main(*run, **extra)
        except NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(EXIT_USAGE)
        except typer.TyperException as exc:  # click's ClickException and UsageError
            code = int(getattr(exc, "exit_code", EXIT_FAILURE))
            hint = _usage_hint(exc) if code == EXIT_USAGE else ""
            _error(one_line(exc.format_message()) + hint)
            sys.exit(code)
        except typer.Abort:
            _error("aborted")
            sys.exit(EXIT_FAILURE)
        except Exception as exc:
            _report(exc)
        sys.exit(code if isinstance(code, int) else 0)


def _report(exc: BaseException) -> None:
    """One line for an exception no command handled, then exit with its code."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, RMQError):
        _error(one_line(str(exc)) or type(exc).__name__)
        sys.exit(exit_code_for(exc))
    if isinstance(exc, OSError) and exc.strerror:
        _error(one_line(exc.strerror))
        sys.exit(EXIT_FAILURE)
    _error(f"unexpected {type(exc).__name__}: {one_line(str(exc))}")
    sys.exit(EXIT_FAILURE)


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
