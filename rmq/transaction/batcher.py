"""Group commit for the transaction scripts: concurrent callers share round trips.

While one round trip is in flight, new requests queue up and the next round trip carries all of
them (a lone caller pays one round trip, sent inline). Every request here is safe to repeat (the
prepare, commit and rollback scripts are idempotent by msg_id), so a round trip that failed
transiently is simply sent again, with backoff, within `send_timeout` and `send_retries`.

Requests that call the same script on the same queue with the same fixed arguments can also share
one script call (`Merge`): their per-message values are concatenated and the reply is split back.
When a merged reply cannot be split (a commit that changed nothing because one of the messages was
rolled back, say), the requests are sent again at once, each on its own, so each gets the answer
it would have had alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

from ..calls import Call, script_error
from ..connection import Backoff, is_transient
from ..context import Context
from ..errors import BrokerError, BrokerUnavailable, ProducerClosed
from ..router import WireSet

__all__ = ["Batcher", "Merge"]

Command = tuple[Any, ...]
Splitter = Callable[[Any, Sequence[int]], list[Any] | None]
"""(the merged reply, messages per request) -> one reply per request, or None: not splittable."""

_MERGE_MAX = 500
"""Most messages one merged script call carries (bounds the time Redis is busy with it)."""


class Merge(NamedTuple):
    """How a one-command request may share its script call with others of the same `key`."""

    key: Hashable
    """Requests with equal keys call the same script on the same keys with the same fixed args."""
    head: Command
    """The command without the per-message values."""
    values: tuple[Any, ...]
    """This request's per-message values (appended to `head`)."""
    messages: int
    """Messages in `values`."""
    split: Splitter

    @classmethod
    def of(cls, call: Call[Any]) -> Merge:
        """How a mergeable script call (`Call.head` > 0) may share its script call."""
        assert call.head and call.split is not None
        command, n = call.command, call.head
        head = command[:n]
        return cls(head, head, command[n:], call.count, call.split)


class _Request:
    __slots__ = ("commands", "deadline", "future", "merge", "what")

    def __init__(
        self, commands: Sequence[Command], deadline: float, what: str, merge: Merge | None
    ) -> None:
        self.commands = commands
        self.deadline = deadline
        self.what = what
        self.merge = merge
        self.future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Batcher:
    """Runs requests (a few commands each, replies in order) on one dedicated connection."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._wire: WireSet = ctx.conn.wires()
        self._queue: list[_Request] = []
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, what: str, *commands: Command, merge: Merge | None = None) -> list[Any]:
        """Run `commands` in one round trip (shared with concurrent callers); their replies.

        With `merge` (for a single command), the command may share one script call with other
        requests of the same merge key.
        A script's own error reply raises `ScriptError`/`BrokerError`; Redis unreachable within
        the send budget raises `BrokerUnavailable` (the commands may or may not have run).
        """
        deadline = time.monotonic() + self.ctx.settings.send_timeout
        request = _Request(commands, deadline, what, merge if len(commands) == 1 else None)
        if self._busy:
            self._queue.append(request)
            return await request.future
        self._busy = True
        try:
            await self._run([request])
        finally:
            if self._queue:
                task = asyncio.get_running_loop().create_task(self._drain())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._busy = False
        return request.future.result()

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._run(batch)
        finally:
            self._busy = False
            stranded, self._queue = self._queue, []
            for request in stranded:
                request.fail(ProducerClosed("the producer was stopped"))

    async def _run(self, requests: list[_Request]) -> None:
        settings = self.ctx.settings
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        try:
            while requests:
                requests, failed = await self._attempt(requests)
                if not requests:
                    return
                if not failed:
                    continue  # only unmerged again: no failure, no backoff
                delay = backoff.next_delay()
                deadline = min(r.deadline for r in requests)
                if backoff.attempt > settings.send_retries or time.monotonic() + delay >= deadline:
                    for request in requests:
                        request.fail(
                            BrokerUnavailable(
                                f"{request.what} at {self.ctx.conn.url} failed after "
                                f"{backoff.attempt} attempt(s) within {settings.send_timeout}s; "
                                "it may or may not have happened"
                            )
                        )
                    return
                await asyncio.sleep(delay)
        except BaseException:
            for request in requests:
                request.fail(ProducerClosed(f"{request.what} was cancelled"))
            raise

    async def _attempt(self, requests: list[_Request]) -> tuple[list[_Request], bool]:
        """One round trip; resolves what it can and returns the requests to send again, and
        whether any of them failed (rather than only needing to go unmerged)."""
        commands, groups = _plan(requests)
        deadline = min(r.deadline for r in requests)
        try:
            replies = await self._wire.execute(commands, max(0.001, deadline - time.monotonic()))
        except Exception as exc:
            if not is_transient(exc):
                for request in requests:
                    request.fail(BrokerError(f"{request.what} failed: {exc!r}"))
                return [], True
            replies = [exc] * len(commands)
        answers: dict[int, list[Any]] = {}
        again: list[_Request] = []
        start = 0
        for group in groups:
            if len(group) == 1:
                request = group[0]
                answers[id(request)] = replies[start : start + len(request.commands)]
                start += len(request.commands)
                continue
            reply = replies[start]
            start += 1
            if isinstance(reply, BaseException) and is_transient(reply):
                for request in group:
                    answers[id(request)] = [reply]
                continue
            split = group[0].merge.split if group[0].merge else None
            parts = None
            if split is not None and not isinstance(reply, BaseException):
                parts = split(reply, [r.merge.messages if r.merge else 0 for r in group])
            if parts is None:  # each on its own, at once
                for request in group:
                    request.merge = None
                again.extend(group)
                continue
            for request, part in zip(group, parts, strict=True):
                answers[id(request)] = [part]
        retry: list[_Request] = []
        for request in requests:
            got = answers.get(id(request))
            if got is None:
                continue
            errors = [r for r in got if isinstance(r, BaseException)]
            if not errors:
                if not request.future.done():
                    request.future.set_result(got)
            elif any(is_transient(e) for e in errors):
                retry.append(request)
            else:
                request.fail(_wrap(request.what, errors[0]))
        return retry + again, bool(retry)


def _plan(requests: list[_Request]) -> tuple[list[Command], list[list[_Request]]]:
    """The commands of one round trip, and which requests each group of commands answers: a
    lone request (its own commands) or requests sharing one merged script call."""
    filling: dict[Hashable, list[_Request]] = {}  # merge key -> the group still taking requests
    sizes: dict[Hashable, int] = {}  # merge key -> messages in that group
    groups: list[list[_Request]] = []
    for request in requests:
        merge = request.merge
        if merge is None:
            groups.append([request])
            continue
        group = filling.get(merge.key)
        if group is None or sizes[merge.key] + merge.messages > _MERGE_MAX:
            group = filling[merge.key] = []
            sizes[merge.key] = 0
            groups.append(group)
        group.append(request)
        sizes[merge.key] += merge.messages
    commands: list[Command] = []
    for group in groups:
        first = group[0]
        if len(group) == 1 or first.merge is None:
            commands.extend(first.commands)
        else:
            values = [v for r in group if r.merge for v in r.merge.values]
            commands.append((*first.merge.head, *values))
    return commands, groups


def _wrap(what: str, exc: BaseException) -> BaseException:
    return script_error(what, exc)
