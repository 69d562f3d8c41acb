"""The event loop behind `rmq.sync`: one background thread per client, and the hand-offs.

`LoopThread` runs an event loop (uvloop when installed) in a daemon thread. Calling threads hand
it work with `submit(fn, *args)`: the call is appended to an inbox and the loop is woken once per
batch (one `call_soon_threadsafe` while the loop has not drained the inbox yet, however many
threads submit meanwhile), so concurrent threads share wake-ups as they share round trips. The
inbox is first in, first out: a `flush` submitted after some one-way sends runs after they were
queued. A caller that waits holds a `Waiter`, a one-shot lock the loop releases with the result.

The loop thread must never wait for itself: `Waiter.wait()` on the loop thread raises (a send
callback that calls the blocking API, say), instead of hanging forever.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["LoopThread", "Waiter"]

log = logging.getLogger("rmq.sync")

T = TypeVar("T")
_UNSET: Any = object()


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (a dependency on Linux and macOS), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platform without uvloop
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class Waiter(Generic[T]):
    """A result one thread waits for and another sets, once."""

    __slots__ = ("_error", "_lock", "_result", "owner")

    def __init__(self, owner: LoopThread) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._lock.acquire()
        self._result: T = _UNSET
        self._error: BaseException | None = None

    def set(self, result: T) -> None:
        self._result = result
        self._lock.release()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._lock.release()

    def from_future(self, future: asyncio.Future[T]) -> None:
        """A done callback: the future's result or error."""
        if future.cancelled():
            self.fail(asyncio.CancelledError("the rmq client's call was cancelled"))
            return
        error = future.exception()
        if error is None:
            self.set(future.result())
        else:
            self.fail(error)

    def wait(self) -> T:
        """Block until the result is set; raise its error."""
        if threading.get_ident() == self.owner.ident:
            raise RuntimeError(
                "a blocking rmq.sync call from the client's own event loop thread (in a send "
                "callback?) would wait forever: call it from another thread"
            )
        self._lock.acquire()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._result


class LoopThread:
    """An event loop running in a daemon thread, fed by other threads."""

    def __init__(self, name: str = "rmq-sync") -> None:
        self.name = name
        self.loop = new_loop()
        self.ident: int | None = None
        self._lock = threading.Lock()
        self._inbox: list[tuple[contextvars.Context | None, Callable[..., Any], tuple[Any, ...]]]
        self._inbox = []
        self._waking = False
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def _main(self) -> None:
        self.ident = threading.get_ident()
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    # ------------------------------------------------------------------ hand-offs

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the loop soon (in submission order); exceptions are logged."""
        self.submit_in(None, fn, *args)

    def submit_in(
        self, context: contextvars.Context | None, fn: Callable[..., Any], *args: Any
    ) -> None:
        """`submit`, running `fn` in `context` (the caller's context variables: its trace
        context, say) when one is given."""
        with self._lock:
            self._inbox.append((context, fn, args))
            if self._waking:
                return
            self._waking = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._inbox = self._inbox, []
            self._waking = False
        for context, fn, args in items:
            try:
                if context is None:
                    fn(*args)
                else:
                    context.run(fn, *args)
            except Exception:
                log.exception("rmq.sync: a call on the client's event loop failed")

    def run(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run the coroutine `factory()` makes on the loop, in a copy of the caller's context
        variables, and wait for its result."""
        waiter: Waiter[T] = Waiter(self)
        self.submit_in(contextvars.copy_context(), self._start, factory, waiter)
        return waiter.wait()

    def _start(self, factory: Callable[[], Awaitable[T]], waiter: Waiter[T]) -> None:
        try:
            future = asyncio.ensure_future(factory())
        except BaseException as exc:
            waiter.fail(exc)
            return
        future.add_done_callback(waiter.from_future)

    def stop(self) -> None:
        """Stop the loop (after what was submitted) and wait for the thread to end."""
        if not self._thread.is_alive():
            return
        if threading.get_ident() == self.ident:
            raise RuntimeError("rmq.sync: a client cannot be closed from its own event loop")
        self.submit(self.loop.stop)
        self._thread.join()
