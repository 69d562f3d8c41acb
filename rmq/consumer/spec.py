"""What `@app.consumer(...)` records: a handler and how to run it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ..errors import ConfigError
from ..filters import MessageFilter, compile_filter
from ..message import Message
from ..names import validate_group, validate_topic
from ..retry import RetryPolicy, retry_policy

__all__ = ["ConsumerSpec", "Handler", "StartPosition", "start_argument"]

Handler = Callable[[Message], Awaitable[None]] | Callable[[Message], None]
ConsumeMode = Literal["concurrently", "orderly"]
MessageModel = Literal["clustering", "broadcasting"]
AllocateStrategy = Callable[[int, Sequence[str], str], list[int]]
"""`strategy(queue_count, sorted_live_members, me) -> my queue ids` (orderly rebalance)."""
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
    retry: RetryPolicy | Sequence[float | timedelta] | float | None = None
    max_retries: int = 16
    max_deliveries: int = 5
    timeout: float | None = None
    tag: str | None = None
    sql: str | None = None
    mode: ConsumeMode = "concurrently"
    model: MessageModel = "clustering"
    suspend: float = 1.0
    allocate: AllocateStrategy | None = None
    instance_id: str | None = None
    broadcast_retries: int = 3
    policy: RetryPolicy = field(init=False)
    filter: MessageFilter = field(init=False)

    def __post_init__(self) -> None:
        validate_topic(self.topic)
        validate_group(self.group)
        start_argument(self.start)
        if not callable(self.handler):
            raise ConfigError(f"handler must be callable, got {type(self.handler).__name__}")
        for name in ("concurrency", "prefetch", "fetch_batch", "visibility_timeout", "timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        if self.mode not in ("concurrently", "orderly"):
            raise ConfigError(f"mode must be 'concurrently' or 'orderly', got {self.mode!r}")
        if self.model not in ("clustering", "broadcasting"):
            raise ConfigError(f"model must be 'clustering' or 'broadcasting', got {self.model!r}")
        if self.mode == "orderly" and self.model == "broadcasting":
            raise ConfigError("orderly consumption is for the clustering model only")
        if not (isinstance(self.suspend, int | float) and self.suspend >= 0):
            raise ConfigError(f"suspend must be seconds >= 0, got {self.suspend!r}")
        if self.allocate is not None and not callable(self.allocate):
            raise ConfigError("allocate must be a strategy callable")
        if not isinstance(self.broadcast_retries, int) or self.broadcast_retries < 0:
            raise ConfigError(
                f"broadcast_retries must be an int >= 0, got {self.broadcast_retries!r}"
            )
        object.__setattr__(self, "policy", retry_policy(self.retry))
        object.__setattr__(self, "filter", compile_filter(self.tag, self.sql))
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if isinstance(self.max_deliveries, bool) or not isinstance(self.max_deliveries, int):
            raise ConfigError(f"max_deliveries must be an int >= 1, got {self.max_deliveries!r}")
        if self.max_deliveries < 1:
            raise ConfigError(f"max_deliveries must be >= 1, got {self.max_deliveries!r}")

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
