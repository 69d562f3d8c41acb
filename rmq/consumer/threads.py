"""Worker threads for plain (`def`) handlers, at most `size` of them per consumer.

A sync handler that runs past its timeout cannot be interrupted: its thread runs on while the
message is retried. anyio's `to_thread.run_sync(..., abandon_on_cancel=True)` gives the thread's
place back at once, so a slow handler could pile up unbounded threads, each running its message
again. Here a place is given back only when the thread has really finished, so `concurrency`
holds whatever the handlers do. The threads are daemons: a handler stuck forever does not keep the
process from exiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["HandlerThreads"]

_Job = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[..., Any], Any
]


class HandlerThreads:
    """Runs `fn(arg)` in one of at most `size` daemon threads."""

    def __init__(self, size: int, name: str = "rmq-handler") -> None:
        self.size = size
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._places: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self.busy = 0
        """Places taken: handlers running now, including ones past their timeout."""

    async def call(self, fn: Callable[[Any], Any], arg: Any, limit: float | None = None) -> Any:
        """`fn(arg)` in a thread; waits for a free place first, then up to `limit` seconds
        (`TimeoutError`; the thread runs on and keeps its place until it returns)."""
        if self._places is None:
            self._places = asyncio.Semaphore(self.size)
        await self._places.acquire()
        self.busy += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((loop, future, contextvars.copy_context(), fn, arg))
        self._spawn_if_needed()
        if limit is None:
            return await future
        async with asyncio.timeout(limit):
            return await future

    def close(self) -> None:
        """Let idle threads exit (busy ones finish their handler first)."""
        with self._lock:
            for _ in range(self._threads):
                self._jobs.put(None)
            self._threads = 0

    def _spawn_if_needed(self) -> None:
        with self._lock:
            if self._idle or self._threads >= self.size:
                return
            self._threads += 1
        threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            loop, future, context, fn, arg = job
            result: Any = None
            error: BaseException | None = None
            if not future.done():  # not given up on before it started
                try:
                    result = context.run(fn, arg)
                except BaseException as exc:
                    error = exc
            try:
                loop.call_soon_threadsafe(self._finished, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _finished(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        assert self._places is not None
        self.busy -= 1
        self._places.release()
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
