"""A lone blocking send, done in the calling thread: one round trip, no thread hop.

Handing a send to the client's event loop thread and back costs two thread wake-ups per
message on top of the round trip (tens of microseconds each when the two threads sit on
different CPUs), which only pays when several threads send at once and share round trips. So
while no other send of the same producer is in flight, `Inline.send` stores the message itself:
the same `Outgoing` checks and encoding, the same `send` script (its EVALSHA built by
`rmq.calls`), retried with the same backoff within `send_timeout` under the same dedup rule, on a
connection of its own. The rule holds because one inline send runs at a time (a lock) under a
dedup session of its own, retrying its one message before anything else.

Every other send goes through the loop (`rmq.group_commit`): when another thread is sending
inline or the producer has sends queued (a later send never overtakes an earlier one of the
same producer), for delayed messages, a topic not seen yet (the loop creates it), and on a
Redis Cluster.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import redis
from redis.exceptions import NoScriptError

from .. import metrics
from ..connection import Backoff
from ..context import Context
from ..errors import BrokerUnavailable
from ..failures import is_transient, translate
from ..message import SendResult, SendStatus
from ..outgoing import Outgoing, QueueChooser, encode

__all__ = ["Inline"]

_REPORT_SECONDS = 0.5


class Inline:
    """Sends one message at a time in the calling thread (see the module docstring)."""

    def __init__(self, ctx: Context, client_name: str, loop: asyncio.AbstractEventLoop) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self._loop = loop
        self._tally_lock = threading.Lock()
        self._tally: dict[str, tuple[list[float], list[int]]] = {}
        self._reporting = False
        self.enabled = not ctx.conn.cluster
        self._lock = threading.Lock()
        self._chooser = QueueChooser()
        self._session = f"{os.getpid():x}-{os.urandom(6).hex()}-i"
        self._source = ctx.conn.scripts["send"].source
        self._client: redis.Redis | None = None
        self._options: dict[str, Any] = dict(
            socket_timeout=min(settings.socket_timeout, settings.send_timeout),
            socket_connect_timeout=settings.connect_timeout,
            client_name=client_name,
            protocol=2,
            single_connection_client=True,  # one send at a time: no pool checkout per command
        )

    def send(self, out: Outgoing) -> SendResult | None:
        """Store `out` now and return its result, or None: the loop is to send it."""
        if not self.enabled or out.delay is not None or out.deliver_at is not None:
            return None
        if out.delay_level is not None or not self._lock.acquire(blocking=False):
            return None
        try:
            info = self.ctx.topics.cached(out.topic)
            if info is None:
                return None
            encoded = encode(self.ctx.settings, out)
            queue_id = self._chooser.choose(info, out)
            offset = self._store(out.topic, queue_id, encoded.values, encoded.size)
            return SendResult(SendStatus.SEND_OK, encoded.msg_id, out.topic, queue_id, offset)
        finally:
            self._lock.release()

    def _store(self, topic: str, queue_id: int, values: list[Any], size: int) -> str:
        settings = self.ctx.settings
        deadline = time.monotonic() + settings.send_timeout
        backoff: Backoff | None = None
        retry = loaded = False
        while True:
            call = self.ctx.calls.send(topic, queue_id, self._session, retry, values)
            started = time.perf_counter()
            try:
                reply: Any = self._connection().execute_command(*call.command)  # type: ignore[no-untyped-call]
            except NoScriptError as exc:  # the server forgot the script: it did not run
                if loaded:
                    raise translate(exc, "send") from None
                self._connection().script_load(self._source)
                loaded = True
                continue
            except Exception as exc:
                reply = exc
            if not (isinstance(reply, BaseException) and is_transient(reply)):
                try:
                    (offset,) = call.result(reply)
                except BaseException as exc:
                    metrics.published(topic, "error", 1)
                    raise translate(exc, "send") from None
                self._count(topic, time.perf_counter() - started, size)
                return offset
            self._drop()
            if backoff is None:
                backoff = Backoff(settings.backoff_base, settings.backoff_cap)
            delay = backoff.next_delay()
            if backoff.attempt > settings.send_retries or time.monotonic() + delay >= deadline:
                metrics.published(topic, "error", 1)
                error = BrokerUnavailable(
                    f"send to {self.ctx.conn.url} failed after {backoff.attempt} attempt(s) "
                    f"within {settings.send_timeout}s; the message may or may not be stored: "
                    f"{reply!r}"
                )
                raise error from reply
            time.sleep(delay)
            retry = True

    def _count(self, topic: str, seconds: float, size: int) -> None:
        """Tally a stored message for the metrics; the client's loop exports the tallies
        (`rmq.metrics.published` off the loop would export at every call)."""
        with self._tally_lock:
            durations, sizes = self._tally.setdefault(topic, ([], []))
            durations.append(seconds)
            sizes.append(size)
            if self._reporting:
                return
            self._reporting = True
        try:
            self._loop.call_soon_threadsafe(self._loop.call_later, _REPORT_SECONDS, self.report)
        except RuntimeError:  # the loop is closed: export here
            self.report()

    def report(self) -> None:
        """Hand the tallied sends to `rmq.metrics` (on the loop, or at close)."""
        with self._tally_lock:
            tally, self._tally = self._tally, {}
            self._reporting = False
        for topic, (durations, sizes) in tally.items():
            metrics.published(topic, "ok", len(durations), None, sizes)
            for seconds in durations:
                metrics.published(topic, "ok", 0, seconds)

    def _connection(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.ctx.settings.redis_url, **self._options)
        return self._client

    def _drop(self) -> None:
        """Forget the connection after a failure: the next attempt connects afresh."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            self._drop()
        self.report()
