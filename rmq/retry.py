"""Retry backoff policies and RocketMQ's delay levels.

A policy maps the retry number (1 for the first retry) to a delay in seconds:

- `Schedule([10, 30, 60, ...])`: an explicit list; retries past its end reuse the last delay.
- `Exponential(initial=5, factor=2, max=7200, jitter=0.1)`.
- `Fixed(seconds)`.

The default is RocketMQ's schedule for retries 1..16: 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m
30m 1h 2h.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from .errors import ConfigError

__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "DELAY_LEVELS",
    "Exponential",
    "Fixed",
    "RetryPolicy",
    "Schedule",
    "delay_level_seconds",
    "retry_policy",
    "seconds",
]

DELAY_LEVELS: tuple[float, ...] = (
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200,
)  # fmt: skip
"""RocketMQ's 18 delay levels: 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h."""

DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = DELAY_LEVELS[2:]
"""RocketMQ's backoff for retries 1..16 (delay level 3 + retry number - 1)."""


def seconds(value: float | timedelta, what: str = "duration") -> float:
    """A duration given as seconds or a timedelta, as float seconds (>= 0)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{what} must be a number of seconds >= 0 or a timedelta, got {value!r}")
    return float(value)


def delay_level_seconds(level: int) -> float:
    """The delay of RocketMQ delay level 1..18."""
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 18:
        raise ConfigError(f"delay_level must be 1..18, got {level!r}")
    return DELAY_LEVELS[level - 1]


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides how long to wait before retry number `attempt` (1-based)."""

    def delay(self, attempt: int) -> float: ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """Explicit delays in seconds; retries past the end reuse the last one."""

    delays: tuple[float, ...]

    def __init__(self, delays: Sequence[float | timedelta]) -> None:
        values = tuple(seconds(d, "a retry delay") for d in delays)
        if not values:
            raise ConfigError("a retry schedule needs at least one delay")
        object.__setattr__(self, "delays", values)

    def delay(self, attempt: int) -> float:
        return self.delays[min(max(attempt, 1), len(self.delays)) - 1]


@dataclass(frozen=True, slots=True)
class Exponential:
    """`initial * factor**(attempt-1)`, capped at `max`, then +/- `jitter` (a fraction)."""

    initial: float = 5.0
    factor: float = 2.0
    max: float = 7200.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.factor >= 1 and self.max >= self.initial):
            raise ConfigError("Exponential needs initial > 0, factor >= 1 and max >= initial")
        if not 0 <= self.jitter < 1:
            raise ConfigError("jitter is a fraction in [0, 1)")

    def delay(self, attempt: int) -> float:
        base = min(self.max, self.initial * self.factor ** (max(attempt, 1) - 1))
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return base


@dataclass(frozen=True, slots=True)
class Fixed:
    """The same delay before every retry."""

    seconds: float

    def __post_init__(self) -> None:
        seconds(self.seconds, "Fixed delay")

    def delay(self, attempt: int) -> float:
        return self.seconds


def retry_policy(value: RetryPolicy | Sequence[float | timedelta] | float | None) -> RetryPolicy:
    """Normalise a consumer's `retry=` argument: a policy, a list of delays, one delay, or None."""
    if value is None:
        return Schedule(DEFAULT_RETRY_SCHEDULE)
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
        return Fixed(seconds(value, "retry delay"))
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return Schedule(value)
    raise ConfigError(f"retry must be a RetryPolicy, a list of delays or a delay, got {value!r}")
