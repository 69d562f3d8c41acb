"""Group commit for the transaction scripts: concurrent callers share round trips.

While one round trip is in flight, new requests queue up and the next round trip carries all of
them (a lone caller pays one round trip, sent inline). Every request here is safe to repeat (the
prepare, commit and rollback scripts are idempotent by msg_id), so a round trip that failed
transiently is simply sent again, with backoff, within `send_timeout` and `send_retries`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from ..connection import Backoff, broker_error, is_transient
from ..context import Context
from ..errors import BrokerError, BrokerUnavailable, ProducerClosed
from ..router import WireSet
from ..scripts import raise_script_error

__all__ = ["Batcher"]

Command = tuple[Any, ...]


class _Request:
    __slots__ = ("commands", "deadline", "future", "what")

    def __init__(self, commands: Sequence[Command], deadline: float, what: str) -> None:
        self.commands = commands
        self.deadline = deadline
        self.what = what
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

    async def call(self, what: str, *commands: Command) -> list[Any]:
        """Run `commands` in one round trip (shared with concurrent callers); their replies.

        A script's own error reply raises `ScriptError`/`BrokerError`; Redis unreachable within
        the send budget raises `BrokerUnavailable` (the commands may or may not have run).
        """
        request = _Request(commands, time.monotonic() + self.ctx.settings.send_timeout, what)
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
                requests = await self._attempt(requests)
                if not requests:
                    return
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

    async def _attempt(self, requests: list[_Request]) -> list[_Request]:
        """One round trip; resolves what it can and returns the requests to retry."""
        commands = [c for r in requests for c in r.commands]
        deadline = min(r.deadline for r in requests)
        try:
            replies = await self._wire.execute(commands, max(0.001, deadline - time.monotonic()))
        except Exception as exc:
            if not is_transient(exc):
                for request in requests:
                    request.fail(BrokerError(f"{request.what} failed: {exc!r}"))
                return []
            replies = [exc] * len(commands)
        retry: list[_Request] = []
        start = 0
        for request in requests:
            got = replies[start : start + len(request.commands)]
            start += len(request.commands)
            errors = [r for r in got if isinstance(r, BaseException)]
            if not errors:
                if not request.future.done():
                    request.future.set_result(got)
            elif any(is_transient(e) for e in errors):
                retry.append(request)
            else:
                request.fail(_wrap(request.what, errors[0]))
        return retry


def _wrap(what: str, exc: BaseException) -> BaseException:
    if isinstance(exc, ResponseError):
        try:
            raise_script_error(what, exc)
        except BrokerError as wrapped:
            return wrapped
    return broker_error(exc, what)
