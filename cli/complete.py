"""Shell completion of topic and group names (read from Redis through `rmq.admin`).

Completion must never fail loudly: any error (no Redis, bad settings) completes nothing.
"""

from __future__ import annotations

from typing import Any

import anyio
import typer

from rmq import App
from rmq.settings import Settings

_TIMEOUT = 1.0


def _settings(ctx: typer.Context) -> Settings:
    params = ctx.find_root().params
    overrides: dict[str, Any] = {"startup_timeout": 0.0, "connect_timeout": _TIMEOUT}
    if params.get("redis_url"):
        overrides["redis_url"] = params["redis_url"]
    if params.get("namespace"):
        overrides["namespace"] = params["namespace"]
    return Settings.from_env(**overrides)


def _names(ctx: typer.Context, topic: str | None) -> list[str]:
    async def read() -> list[str]:
        with anyio.fail_after(_TIMEOUT * 2):
            async with App(_settings(ctx)) as app:
                if topic is None:
                    return [t.name for t in await app.admin.topics()]
                return [g.group for g in await app.admin.groups(topic)]

    try:
        return anyio.run(read)
    except Exception:
        return []


def complete_topic(ctx: typer.Context, incomplete: str) -> list[str]:
    """Topic names starting with `incomplete`."""
    return [n for n in _names(ctx, None) if n.startswith(incomplete)]


def complete_group(ctx: typer.Context, incomplete: str) -> list[str]:
    """Group names of the topic given before, starting with `incomplete`."""
    topic = ctx.params.get("topic")
    if not isinstance(topic, str) or not topic:
        return []
    return [n for n in _names(ctx, topic) if n.startswith(incomplete)]
