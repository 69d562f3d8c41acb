"""The counters every consumer runtime keeps (`app.running_consumers[i].stats`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConsumerStats"]


@dataclass(slots=True)
class ConsumerStats:
    """Counters of one consumer since it started."""

    received: int = 0
    handled: int = 0
    failed: int = 0
    skipped: int = 0
    filtered: int = 0
    acked: int = 0
    retried: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    trimmed: int = 0
