"""Connections to Redis: two pools, error classification and jittered backoff.

- `commands`: finite socket timeout, a blocking pool (callers wait for a free connection instead of
  failing), no automatic retries: rmq retries only what is safe to repeat, itself.
- `readers`: for blocking XREADGROUP; its socket timeout is longer than any BLOCK rmq issues, and
  it never re-sends a read (a re-sent `XREADGROUP >` would hide entries in the pending list).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import BrokerError, BrokerUnavailable, RMQError
from .scripts import Scripts
from .settings import Settings, redact_url
from .wire import Wire

__all__ = ["Backoff", "RedisConnection", "broker_error", "is_nogroup", "is_transient"]

log = logging.getLogger("rmq.connection")
T = TypeVar("T")

_TRANSIENT_PREFIXES = ("LOADING", "UNBLOCKED", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY ")


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves: connection loss, timeouts, LOADING, failover."""
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return False
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError | OSError):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).startswith(_TRANSIENT_PREFIXES)
    return False


def broker_error(exc: BaseException, what: str = "Redis") -> BaseException:
    """Wrap a redis-py exception in rmq's own tree (rmq errors pass through)."""
    if isinstance(exc, RMQError) or not isinstance(exc, RedisError | OSError):
        return exc
    if isinstance(exc, AuthenticationError | AuthorizationError):
        wrapped: RMQError = BrokerError(f"{what}: Redis refused the credentials: {exc}")
    elif is_transient(exc):
        wrapped = BrokerUnavailable(f"{what}: Redis is unavailable: {type(exc).__name__}: {exc}")
    else:
        wrapped = BrokerError(f"{what}: Redis replied: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def is_nogroup(exc: BaseException) -> bool:
    """True when Redis says the stream or the consumer group does not exist."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


class Backoff:
    """Exponential backoff with full jitter: base, 2*base, ... capped, times random(0.5..1)."""

    __slots__ = ("attempt", "base", "cap")

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay: float = min(self.cap, self.base * 2.0**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


def _pool(settings: Settings, socket_timeout: float | None, name: str) -> BlockingConnectionPool:
    return BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
        client_name=name,
        health_check_interval=30,
    )


class RedisConnection:
    """The Redis clients of one App, plus its scripts."""

    def __init__(self, settings: Settings, client_name: str = "rmq") -> None:
        self.settings = settings
        self.url = redact_url(settings.redis_url)
        self.commands = Redis(connection_pool=_pool(settings, settings.socket_timeout, client_name))
        self.readers = Redis(
            connection_pool=_pool(
                settings, settings.block_seconds + settings.socket_timeout, client_name
            )
        )
        self.scripts = Scripts()
        # Dedicated connections for hot loops; each Wire applies its own deadline per round trip.
        self.wire_pool = _pool(settings, None, client_name)

    async def open(self) -> None:
        """Wait until Redis answers (up to `startup_timeout`) and load the scripts."""

        async def ready() -> None:
            await self.commands.ping()
            await self.scripts.load_all(self.commands)

        await self.retry(ready, deadline=time.monotonic() + self.settings.startup_timeout)

    def wire(self) -> Wire:
        """A dedicated connection for one loop (see `rmq.wire`)."""
        return Wire(self.wire_pool, self.scripts)

    async def close(self) -> None:
        for client in (self.commands, self.readers):
            await client.aclose()
            await client.connection_pool.disconnect()
        await self.wire_pool.disconnect()

    async def retry(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        attempts: int | None = None,
        what: str = "Redis",
    ) -> T:
        """Run `operation`, retrying transient errors with jittered backoff.

        Gives up with `BrokerUnavailable` when `deadline` (monotonic) passes or after `attempts`
        retries; with neither it retries forever. Only use it for operations safe to repeat.
        """
        backoff = Backoff(self.settings.backoff_base, self.settings.backoff_cap)
        while True:
            try:
                return await operation()
            except Exception as exc:
                if not is_transient(exc):
                    raise broker_error(exc, what) from exc
                delay = backoff.next_delay()
                out_of_time = deadline is not None and time.monotonic() + delay > deadline
                out_of_tries = attempts is not None and backoff.attempt > attempts
                if out_of_time or out_of_tries:
                    raise BrokerUnavailable(
                        f"{what} at {self.url} is unavailable: {type(exc).__name__}: {exc}"
                    ) from exc
                log.debug("transient error from %s, retrying in %.2fs: %r", self.url, delay, exc)
                await asyncio.sleep(delay)
