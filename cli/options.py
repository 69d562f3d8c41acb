"""Options and state shared by every command."""

from __future__ import annotations

from dataclasses import dataclass

import typer

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


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


def global_options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()
