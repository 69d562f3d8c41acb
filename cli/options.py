"""Exit codes, global options, and the argument types and parsers every command shares."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from rmq.settings import Settings

from .complete import complete_group, complete_topic

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_START = 4
"""`rmq worker run`: the app cannot start (a missing topic with strict_topics, an ACL refusal, a
full Redis); restarting it would fail the same way."""

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
_ENTRY_ID = re.compile(r"^\d+-\d+$")


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """A time: ISO 8601 (no offset = local time), epoch ms, or a duration ago ("15m", "2h")."""
    text = value.strip()
    if match := _RELATIVE.match(text):
        ago = float(match.group(1)) * _UNITS[match.group(2)]
        return (now or datetime.now().astimezone()) - timedelta(seconds=ago)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000).astimezone()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time: use ISO 8601 (2024-05-01T10:00, 2024-05-01T08:00Z), "
            "epoch ms, or a duration ago (30s, 15m, 2h, 1d)"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")


def parse_duration(value: str) -> float:
    """Seconds from "30", "500ms", "30s", "5m", "2h" or "1d"."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a duration: use 500ms, 30s, 5m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_bound(value: str | None) -> str | datetime | None:
    """A range bound: a stream entry id (`<ms>-<seq>`) or a time (see `parse_time`)."""
    if value is None:
        return None
    if _ENTRY_ID.match(value.strip()):
        return value.strip()
    return parse_time(value)


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
