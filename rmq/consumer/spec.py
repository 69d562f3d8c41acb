"""What `@app.consumer(...)` records: a handler and how to run it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ..errors import ConfigError
from ..message import Message
from ..names import validate_group, validate_topic

__all__ = ["ConsumerSpec", "Handler", "StartPosition", "start_argument"]

Handler = Callable[[Message], Awaitable[None]] | Callable[[Message], None]
StartPosition = Literal["last", "first"] | datetime


def start_argument(start: StartPosition) -> str:
    """The `declare_group` script's start argument: last, first or epoch ms."""
    if start in ("last", "first"):
        return str(start)
    if isinstance(start, datetime):
        moment = start if start.tzinfo else start.replace(tzinfo=UTC)
        return str(max(0, int(moment.timestamp() * 1000)))
    raise ConfigError(f"start must be 'last', 'first' or a datetime, got {start!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSpec:
    """A registered push consumer. `None` settings fall back to the App's settings."""

    topic: str
    group: str
    handler: Handler
    concurrency: int | None = None
    start: StartPosition = "last"
    prefetch: int | None = None
    fetch_batch: int | None = None
    visibility_timeout: float | None = None

    def __post_init__(self) -> None:
        validate_topic(self.topic)
        validate_group(self.group)
        start_argument(self.start)
        if not callable(self.handler):
            raise ConfigError(f"handler must be callable, got {type(self.handler).__name__}")
        for name in ("concurrency", "prefetch", "fetch_batch", "visibility_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.group}"

    @property
    def is_async(self) -> bool:
        return _is_coroutine_function(self.handler)


def _is_coroutine_function(fn: Any) -> bool:
    while hasattr(fn, "func"):  # functools.partial
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )
