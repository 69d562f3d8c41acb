"""Knowing when an app's consumers have nothing left to do: run them until then, then drain.

Idle means, for every consumer watched, on every queue of its topic, as Redis tells it:

- clustering (concurrently or orderly): the group has no undelivered entry on the queue stream
  nor, for concurrent consumers, on its retry stream (XINFO GROUPS `lag`; when Redis cannot tell,
  an `XRANGE` after the group's last delivered id), and no delivered entry awaits its
  acknowledgement (`pending`: a running handler, an outcome not yet written);
- broadcasting: no entry after the instance's saved offset (it is saved once a batch is handled);
- with `scheduled` (the default): no retry waiting for its backoff (concurrent consumers) and no
  delayed message waiting in the topic's delay sets, since either becomes work when it is due;

and, in the process, the app's producers hold no unsent message (each look starts with
`app.flush()`). Redis is read in one pipeline per look, not atomically, so a message moving from
a key not read yet to one already read could hide from one look. Such a move is always made by a
consumer or the promoter and changes the consumers' counters or the keys, so idle is declared only
after two looks in a row find nothing to do and the same counters: nothing moved in between.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from redis.exceptions import ResponseError

from ..connection import broker_error

if TYPE_CHECKING:
    from ..app import App
    from ..consumer.spec import ConsumerSpec
    from ..consumer.stats import ConsumerStats

__all__ = ["Backlog", "RunUntilIdle", "backlog", "run_until_idle", "wait_until_idle"]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What one consumer still has to do on one queue."""

    consumer: str
    """`topic/group`."""
    queue_id: int
    unread: int = 0
    """Entries not delivered yet (to the group, or past a broadcasting instance's offset)."""
    pending: int = 0
    """Entries delivered to the group and not acknowledged yet."""
    retrying: int = 0
    """Retries waiting for their backoff."""
    delayed: int = 0
    """Delayed messages not due yet."""

    def __bool__(self) -> bool:
        return bool(self.unread or self.pending or self.retrying or self.delayed)

    def __str__(self) -> str:
        parts = [
            f"{count} {what}"
            for count, what in (
                (self.unread, "unread"),
                (self.pending, "pending"),
                (self.retrying, "waiting to retry"),
                (self.delayed, "delayed"),
            )
            if count
        ]
        return f"{self.consumer} queue {self.queue_id}: {', '.join(parts) or 'idle'}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _checked(reply: Any) -> Any:
    """`reply`, unless it is an error: then that error, as an rmq error."""
    if isinstance(reply, BaseException):
        raise broker_error(reply, "looking for work left") from reply
    return reply


def _group_row(reply: Any, group: str) -> dict[str, Any] | None:
    """The group's XINFO GROUPS row, or None (no such stream, or no such group on it)."""
    if isinstance(reply, ResponseError) and "no such key" in str(reply).lower():
        return None
    return next((row for row in _checked(reply) if _text(row["name"]) == group), None)


@dataclass
class _Look:
    """The keys to read for one consumer on one queue."""

    consumer: str
    group: str
    queue_id: int
    streams: list[str]  # read by the group (clustering) or the instance (broadcasting)
    retry_set: str | None
    delay_set: str | None
    offset_key: str | None = None  # broadcasting: the instance's saved offsets
    instance: str | None = None


def _looks(
    app: App, spec: ConsumerSpec, instance: str | None, queues: int, scheduled: bool
) -> list[_Look]:
    keys = app.context.keys
    looks = []
    for queue_id in range(queues):
        queue = keys.queue(spec.topic, queue_id)
        delay = queue.delay if scheduled else None
        if spec.model == "broadcasting":
            looks.append(_Look(spec.name, spec.group, queue_id, [queue.stream], None, delay,
                               queue.broadcast_offsets(spec.group), instance))  # fmt: skip
        elif spec.mode == "orderly":
            looks.append(_Look(spec.name, spec.group, queue_id, [queue.stream], None, delay))
        else:
            retry = queue.retry(spec.group) if scheduled else None
            streams = [queue.stream, queue.retry_stream(spec.group)]
            looks.append(_Look(spec.name, spec.group, queue_id, streams, retry, delay))
    return looks


def _commands(look: _Look) -> list[tuple[Any, ...]]:
    """Reads of the look's streams, then ZCARD of its retry and delay sets (those it has)."""
    if look.offset_key is not None:
        commands: list[tuple[Any, ...]] = [("HGET", look.offset_key, look.instance or "")]
    else:
        commands = [("XINFO GROUPS", stream) for stream in look.streams]
    commands += [("ZCARD", key) for key in (look.retry_set, look.delay_set) if key]
    return commands


async def _pipeline(client: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """One round trip; a failed command's reply is its exception."""
    if not commands:
        return []
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies


def _count(reply: Any) -> int:
    return int(_checked(reply))


def _watched(app: App, only: Iterable[str] | None) -> list[tuple[ConsumerSpec, str | None]]:
    """The consumers to look at, each with its broadcasting instance id (None: not known)."""
    wanted = None if only is None else set(only)
    running = {r.spec.name: getattr(r, "instance_id", None) for r in app.running_consumers}
    watched = []
    for spec in app.consumers:
        if wanted is not None and spec.topic not in wanted and spec.name not in wanted:
            continue
        instance = running.get(spec.name) or spec.instance_id or app.settings.instance_id
        if spec.model == "broadcasting" and instance is None:
            continue  # not running, so no instance id yet: nothing to compare offsets with
        watched.append((spec, instance))
    return watched


async def backlog(
    app: App, *, only: Iterable[str] | None = None, scheduled: bool = True
) -> list[Backlog]:
    """What the consumers of the open `app` still have to do: one entry per busy queue.

    `only` names the consumers to look at (`"topic"` or `"topic/group"`; default all of them);
    `scheduled=False` leaves retries waiting for their backoff and delayed messages out. A
    broadcasting consumer is looked at while it runs (or when its instance id is set).
    """
    ctx = app.context
    looks: list[_Look] = []
    for spec, instance in _watched(app, only):
        info = await ctx.topics.get(spec.topic)
        if info is not None:
            looks += _looks(app, spec, instance, info.queues, scheduled)
    plan = [_commands(look) for look in looks]
    replies = await _pipeline(ctx.conn.commands, [c for commands in plan for c in commands])
    partial_counts: list[tuple[Backlog, list[tuple[str, str]]]] = []
    follow_up: list[tuple[Any, ...]] = []  # is there an entry after this id? (`lag` unknown)
    at = 0
    for look, commands in zip(looks, plan, strict=True):
        reads = replies[at : at + len(look.streams)]
        sets = iter(replies[at + len(look.streams) : at + len(commands)])
        at += len(commands)
        retrying = _count(next(sets)) if look.retry_set else 0
        delayed = _count(next(sets)) if look.delay_set else 0
        unread = pending = 0
        after: list[tuple[str, str]] = []
        if look.offset_key is not None:
            offset = _checked(reads[0])
            after.append((look.streams[0], "0-0" if offset is None else _text(offset)))
        else:
            for stream, reply in zip(look.streams, reads, strict=True):
                row = _group_row(reply, look.group)
                if row is None:  # no retry stream yet, or the group is not declared there
                    continue
                pending += int(row["pending"])
                lag = row.get("lag")
                if lag is None:
                    after.append((stream, _text(row["last-delivered-id"])))
                else:
                    unread += int(lag)
        follow_up += [("XRANGE", s, f"({entry_id}", "+", "COUNT", 1) for s, entry_id in after]
        counts = Backlog(look.consumer, look.queue_id, unread, pending, retrying, delayed)
        partial_counts.append((counts, after))
    extra = iter(await _pipeline(ctx.conn.commands, follow_up))
    out: list[Backlog] = []
    for counts, after in partial_counts:
        beyond = 0
        for _ in after:
            beyond += 1 if _checked(next(extra)) else 0
        item = dataclasses.replace(counts, unread=counts.unread + beyond)
        if item:
            out.append(item)
    return out


def _counters(app: App) -> list[tuple[Any, ...]]:
    return [dataclasses.astuple(r.stats) for r in app.running_consumers]


async def wait_until_idle(
    app: App,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - the error names what is left, fail_after cannot
    only: Iterable[str] | None = None,
    scheduled: bool = True,
    poll: float = 0.02,
) -> None:
    """Return once the running consumers of `app` have nothing to do (see the module docstring).

    Raises `TimeoutError`, naming what is left, after `timeout` seconds.
    """
    names = None if only is None else list(only)  # read more than once
    deadline = time.monotonic() + timeout
    quiet: list[tuple[Any, ...]] | None = None  # counters of the last look that found nothing
    while True:
        before = _counters(app)
        await app.flush()
        left = await backlog(app, only=names, scheduled=scheduled)
        after = _counters(app)
        if left or before != after:
            quiet = None
        elif quiet == after:
            return
        else:
            quiet = after
        if time.monotonic() > deadline:
            detail = "; ".join(map(str, left)) or "the consumers kept working"
            raise TimeoutError(f"not idle after {timeout:g}s: {detail}")
        await anyio.sleep(poll)


async def run_until_idle(
    app: App,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - it drains the app before raising
    only: Iterable[str] | None = None,
    scheduled: bool = True,
    poll: float = 0.02,
) -> dict[str, ConsumerStats]:
    """Run the consumers of `app` until they have nothing left to do, then drain and stop.

    Waits as `wait_until_idle` does (a retry waits out its backoff, a delayed message its due
    time, unless `scheduled=False`), then stops the app gracefully, as `rmq worker run` does on
    SIGTERM. Returns each consumer's counters by `topic/group` (handled, retried, dead-lettered...).
    Raises `TimeoutError` (after draining) when the consumers are still busy after `timeout`.
    """
    failure: TimeoutError | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))
        try:
            await wait_until_idle(app, timeout=timeout, only=only, scheduled=scheduled, poll=poll)
        except TimeoutError as exc:
            failure = exc
        finally:
            app.stop()
    if failure is not None:
        raise failure
    return {r.spec.name: r.stats for r in app.running_consumers}


class RunUntilIdle(Protocol):
    """The type of the `rmq_run_until_idle` fixture: `run_until_idle` with `app` optional."""

    def __call__(
        self,
        app: App | None = None,
        *,
        timeout: float = 30.0,
        only: Iterable[str] | None = None,
        scheduled: bool = True,
    ) -> Awaitable[dict[str, ConsumerStats]]: ...
