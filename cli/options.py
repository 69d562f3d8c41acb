"""Exit codes, global options, and the argument types and parsers every command shares."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from rmq.browse import entry_id, is_msg_id
from rmq.durations import duration_seconds
from rmq.settings import Settings

from .complete import complete_group, complete_topic

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_START = 4
"""`rmq worker run`: the app cannot start (a missing topic with strict_topics, an ACL refusal, a
full Redis); restarting it would fail the same way."""

EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_FAILURE: "failure: not found (topic, group, message, dead letter), refused (an ACL "
    "permission missing, Redis full), not confirmed",
    EXIT_USAGE: "usage: bad arguments, ids, names or settings (RMQ_* variables, a malformed URL)",
    EXIT_UNAVAILABLE: "Redis unreachable",
    EXIT_START: "cannot start: the app of `rmq worker run`, or a port already in use (`worker "
    "run`, `metrics serve`)",
}
"""The one exit-code table every command follows (the README and the CLI page show it)."""

CLI_STARTUP_TIMEOUT = 3.0
"""How long a command waits for an unreachable Redis, unless RMQ_STARTUP_TIMEOUT says otherwise."""


@dataclass(slots=True)
class GlobalOptions:
    """Values of the root command's options, passed to sub-commands through the typer context."""

    redis_url: str | None = None
    namespace: str | None = None
    json: bool = False

    def overrides(self) -> dict[str, str]:
        """Settings overrides given on the command line (the environment fills the rest)."""
        out: dict[str, str] = {}
        if self.redis_url:
            out["redis_url"] = self.redis_url
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    def settings(self) -> Settings:
        """Settings from RMQ_* variables and these options (raises ConfigError)."""
        overrides: dict[str, Any] = dict(self.overrides())
        if Settings.env_var("startup_timeout") not in os.environ:
            overrides["startup_timeout"] = CLI_STARTUP_TIMEOUT
        return Settings.from_env(**overrides)


def global_options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


TopicArg = Annotated[
    str, typer.Argument(help="Topic name.", autocompletion=complete_topic, show_default=False)
]
GroupArg = Annotated[
    str, typer.Argument(help="Consumer group.", autocompletion=complete_group, show_default=False)
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document.", show_default=False)
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.", show_default=False)
]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)(?:\s+ago)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_OFFSET_LIKE = re.compile(r"^\d+-\d*$")


def bad(message: str, option: str | None = None) -> typer.BadParameter:
    """A usage error (exit 2) about `option` (e.g. "--from", "MSG_ID")."""
    return typer.BadParameter(message, param_hint=option)


def parse_time(value: str, *, now: datetime | None = None, option: str | None = None) -> datetime:
    """A time: ISO 8601 (no offset = local time), epoch ms, or a duration ago ("15m", "2h")."""
    text = value.strip()
    if match := _RELATIVE.match(text):
        ago = float(match.group(1)) * _UNITS[match.group(2)]
        return (now or datetime.now().astimezone()) - timedelta(seconds=ago)
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000).astimezone()
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise bad(
            f"{value!r} is not a time: use ISO 8601 (2024-05-01T10:00, 2024-05-01T08:00Z), "
            "epoch ms, or a duration ago (30s, 15m, 2h, 1d)",
            option,
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def parse_duration(value: str, option: str | None = None) -> float:
    """Seconds from "30", "500ms", "30s", "5m", "2h" or "1d" (as RMQ_* variables take them)."""
    try:
        return duration_seconds(value)
    except ValueError:
        raise bad(f"{value!r} is not a duration: use 500ms, 30s, 5m, 2h or 3d", option) from None


def parse_bound(value: str | None, option: str | None = None) -> str | datetime | None:
    """A range bound: a stream entry id (`<ms>-<seq>`) or a time (see `parse_time`)."""
    if value is None:
        return None
    text = value.strip()
    if _OFFSET_LIKE.match(text):
        return check_offset(text, option)
    return parse_time(value, option=option)


def check_offset(value: str, option: str | None = "--offset") -> str:
    """`value` if it is a stream entry id (`<ms>-<seq>`, both within 64 bits), else exit 2."""
    try:
        return entry_id(value)
    except ValueError as exc:
        raise bad(str(exc), option) from None


def check_message_ref(value: str, option: str | None = "MSG_ID") -> str:
    """An rmq msg_id (32 hex digits, as `rmq send` prints) or an entry id, else exit 2."""
    text = value.strip()
    if is_msg_id(text):
        return text
    try:
        return entry_id(text)
    except ValueError:
        raise bad(
            f"{value!r} is neither a msg_id (32 hex digits, as `rmq send` prints it) nor an "
            "offset (<ms>-<seq>)",
            option,
        ) from None


def parse_properties(values: list[str] | None) -> dict[str, str] | None:
    """`name=value` pairs."""
    if not values:
        return None
    out: dict[str, str] = {}
    for item in values:
        name, eq, val = item.partition("=")
        if not eq or not name:
            raise typer.BadParameter(f"property {item!r} is not name=value")
        out[name] = val
    return out
