"""What the administration reads return: topic status, group progress, consumers, resets and
trims (the `--json` documents of the CLI are built from these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .retention import Policy, StreamTrim
from .state import QueueState

__all__ = [
    "ConsumerInfo",
    "ConsumerState",
    "GroupProgress",
    "GroupSummary",
    "Position",
    "QueueProgress",
    "QueueReset",
    "TopicStatus",
    "TopicTrim",
    "max_or_none",
    "sum_or_none",
]

Position = datetime | Literal["first", "last"]
"""Where `reset_offset` moves a group: a time, or the first or last stored message."""


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """A topic and the state of each of its queues."""

    name: str
    created_ms: int
    groups: list[str]
    queues: list[QueueState]
    retention: Policy | None = None
    """The topic's retention (its overrides applied to the settings)."""


@dataclass(frozen=True, slots=True)
class TopicTrim:
    """What `Admin.trim` removed (or would remove, in a dry run) from each stream of a topic."""

    topic: str
    dry_run: bool
    retention: Policy
    groups: list[str]
    streams: list[StreamTrim]
    """Per queue: the queue stream, then each group's retry stream."""

    @property
    def removed(self) -> int:
        return sum(s.removed for s in self.streams)

    @property
    def removed_unacked(self) -> int:
        return sum(s.removed_unacked for s in self.streams)


@dataclass(frozen=True, slots=True)
class QueueProgress:
    """One group's progress on one queue (mqadmin consumerProgress, per queue)."""

    queue_id: int
    length: int
    last_id: str | None
    last_delivered_id: str
    lag: int | None
    pending: int
    oldest_pending_id: str | None
    oldest_pending_age_seconds: float | None
    """Now minus the time the oldest pending entry was stored (its id is a ms timestamp)."""
    consumers: int
    """Live consumers on this queue (their app beats)."""
    dead_consumers: int
    """Consumers Redis still lists on this queue whose app stopped beating."""
    dlq_length: int
    retry_waiting: int


def sum_or_none(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v or 0 for v in values)


def max_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


@dataclass(frozen=True, slots=True)
class GroupProgress:
    """A consumer group's progress on every queue of a topic, with totals."""

    topic: str
    group: str
    queues: list[QueueProgress]

    @property
    def lag(self) -> int | None:
        """Entries not yet delivered, summed; None when Redis cannot tell for some queue."""
        return sum_or_none([q.lag for q in self.queues])

    @property
    def pending(self) -> int:
        return sum(q.pending for q in self.queues)

    @property
    def oldest_pending_age_seconds(self) -> float | None:
        return max_or_none([q.oldest_pending_age_seconds for q in self.queues])

    @property
    def dlq_length(self) -> int:
        return sum(q.dlq_length for q in self.queues)


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One line of `rmq group list`."""

    topic: str
    group: str
    lag: int | None
    pending: int
    consumers: int
    """Live consumers of the group on any queue (their app beats; see `rmq.health`)."""
    oldest_pending_age_seconds: float | None
    dlq_length: int


ConsumerState = Literal["live", "dead"]
"""A consumer is live while its app beats (see `rmq.health`), dead after."""


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """A consumer (worker process) of a group, over every queue of the topic."""

    name: str
    pending: int
    idle_seconds: float
    """Time since its last read or claim, on the queue it touched last."""
    queues: list[int]
    state: ConsumerState = "live"
    """"live" while its app beats; "dead": stopped or crashed (its pending entries are claimed
    by live consumers after the visibility timeout)."""


@dataclass(frozen=True, slots=True)
class QueueReset:
    """Where `reset_offset` left a group on one queue."""

    queue_id: int
    last_delivered_id: str
    entries_read: int | None
    """None when Redis works the group's lag out by itself once it catches up."""
