"""Connections to Redis: the pools, error classification and jittered backoff.

- `commands`: finite socket timeout, a blocking pool (callers wait for a free connection instead of
  failing), no automatic retries: rmq retries only what is safe to repeat, itself.
- `readers`: for blocking reads and pub/sub; its socket timeout is the longest BLOCK rmq issues
  plus `socket_timeout`, and it never re-sends a read (a re-sent `XREADGROUP >` would hide entries
  in the pending list).
- wires (`rmq.wire`): one dedicated connection per hot loop; each round trip runs under one
  deadline that covers the checkout, the handshake and every reply.

Every client's failures are rmq errors (`rmq.clients`, `rmq.failures`); `stalled()` says whether
a loop's wire cannot reach Redis (for `/readyz`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from .clients import ClusterCommandClient, CommandClient
from .errors import BrokerUnavailable, RMQError
from .failures import describe, is_nogroup, is_transient, translate
from .router import Node, Router, WireSet
from .scripts import Scripts
from .settings import Settings, redact_url
from .wire import Wire

__all__ = ["Backoff", "RedisConnection", "broker_error", "is_nogroup", "is_transient"]

log = logging.getLogger("rmq.connection")
T = TypeVar("T")

broker_error = translate
"""Wrap a redis-py exception in rmq's own tree (rmq errors pass through): `rmq.failures`."""


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


def _pool(
    settings: Settings, socket_timeout: float | None, name: str, url: str | None = None
) -> BlockingConnectionPool:
    """A pool; `socket_timeout` None only for wire pools (a `Wire`'s deadline bounds each of its
    round trips, connect and handshake included)."""
    return BlockingConnectionPool.from_url(
        url or settings.redis_url,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
        client_name=name,
        health_check_interval=settings.health_check_interval,
    )


class RedisConnection:
    """The Redis clients of one App, plus its scripts and (on Redis Cluster) its slot map.

    - `commands`: for any command; on a cluster a `RedisCluster` client that routes by key.
    - `readers`: long blocking reads and pub/sub on the seed node (cluster pub/sub reaches all).
    - `wire_for(key)` / `wires()`: dedicated hot-loop connections to the node owning a key.
    """

    def __init__(self, settings: Settings, client_name: str = "rmq") -> None:
        self.settings = settings
        self.url = redact_url(settings.redis_url)
        self._client_name = client_name
        seed = Node(
            "seed",
            CommandClient(connection_pool=_pool(settings, settings.socket_timeout, client_name)),
            _pool(settings, None, client_name),
        )
        self.router = Router(settings.redis_url, self._make_pool, seed)
        self.commands: Redis | RedisCluster = seed.client
        self.readers = CommandClient(
            connection_pool=_pool(
                settings, settings.block_seconds + settings.socket_timeout, client_name
            )
        )
        self.scripts = Scripts()

    @property
    def cluster(self) -> bool:
        return self.router.cluster

    def _make_pool(self, url: str, kind: str) -> BlockingConnectionPool:
        timeout = self.settings.socket_timeout if kind == "commands" else None
        return _pool(self.settings, timeout, self._client_name, url)

    async def open(self) -> None:
        """Wait until Redis answers (up to `startup_timeout`), find out whether it is a cluster,
        and load the scripts on every primary."""

        async def ready() -> None:
            await self.router.seed.client.ping()
            await self.router.discover()
            if self.router.cluster and not isinstance(self.commands, RedisCluster):
                self.commands = _cluster_client(self.settings, self._client_name)
            for node in self.router.nodes:
                await self.scripts.load_all(node.client)

        deadline = time.monotonic() + self.settings.startup_timeout
        await self.retry(ready, deadline=deadline, cut_at_deadline=True)

    def wire(self) -> Wire:
        """A dedicated connection to the (seed) server, for one loop (see `rmq.wire`)."""
        seed = self.router.seed
        timeout = self.settings.socket_timeout
        return Wire(seed.wire_pool, self.scripts, timeout, seed.progress, "seed")

    def wire_for(self, key: str | bytes | None) -> Wire:
        """A dedicated connection to the node that owns `key`, for a loop bound to its queue.

        A loop that replaces its wire (to reconnect) gets one under the same name (the key), so
        a failure it keeps having still shows in `stalled()`.
        """
        node = self.router.node_for(key)
        name = key.decode() if isinstance(key, bytes) else key
        return Wire(node.wire_pool, self.scripts, self.settings.socket_timeout, node.progress, name)

    def wires(self) -> WireSet:
        """Dedicated connections that route each command to the node owning its key."""
        return WireSet(self.router, self.scripts, self.settings.socket_timeout)

    def stalled(self) -> str | None:
        """Why a loop of this connection cannot reach Redis, or None (see `rmq.wire.Progress`).

        A wire is stalled when a round trip runs past its deadline, or when its round trips have
        failed for longer than a blocking read may take (`block_seconds + socket_timeout`).
        """
        limit = self.settings.block_seconds + self.settings.socket_timeout
        now = time.monotonic()
        for node in {id(n): n for n in (self.router.seed, *self.router.nodes)}.values():
            problem = node.progress.stalled(limit, now)
            if problem is not None:
                return problem if node is self.router.seed else f"{node.name}: {problem}"
        return None

    def read_units(self, streams: list[str]) -> list[list[str]]:
        """Streams that one XREAD/XREADGROUP may name together: all of them on one server, one
        hash slot's worth (a queue and its retry stream) on a cluster."""
        if not self.router.cluster:
            return [streams] if streams else []
        units: dict[int, list[str]] = {}
        for stream in streams:
            units.setdefault(key_slot(stream.encode()), []).append(stream)
        return list(units.values())

    async def close(self) -> None:
        if isinstance(self.commands, RedisCluster):
            await self.commands.aclose()
        for client in (self.router.seed.client, self.readers):
            await client.aclose()
            await client.connection_pool.disconnect()
        await self.router.seed.wire_pool.disconnect()
        await self.router.close()

    async def retry(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        attempts: int | None = None,
        what: str = "Redis",
        cut_at_deadline: bool = False,
    ) -> T:
        """Run `operation`, retrying transient errors with jittered backoff.

        Gives up with `BrokerUnavailable` when `deadline` (monotonic) passes or after `attempts`
        retries; with neither it retries forever. With `cut_at_deadline` an attempt still running
        at the deadline is cancelled (else each attempt is bounded by its own timeouts). Only use
        it for operations safe to repeat.
        """
        backoff = Backoff(self.settings.backoff_base, self.settings.backoff_cap)
        while True:
            try:
                if deadline is None or not cut_at_deadline:
                    return await operation()
                budget = deadline - time.monotonic()
                if backoff.attempt == 0:  # a deadline already passed still allows one try
                    budget = max(budget, self.settings.connect_timeout)
                async with asyncio.timeout(max(0.0, budget)):
                    return await operation()
            except Exception as exc:
                if not is_transient(exc):
                    raise broker_error(exc, what) from exc
                delay = backoff.next_delay()
                out_of_time = deadline is not None and time.monotonic() + delay > deadline
                out_of_tries = attempts is not None and backoff.attempt > attempts
                if out_of_time or out_of_tries:
                    cause = exc.__cause__ if isinstance(exc, RMQError) else exc
                    reason = describe(cause or exc)
                    if isinstance(cause, TimeoutError) and not str(cause):
                        reason = "no answer in time"
                    raise BrokerUnavailable(
                        f"{what} at {self.url} is unavailable: {reason}"
                    ) from exc
                log.debug("transient error from %s, retrying in %.2fs: %r", self.url, delay, exc)
                await asyncio.sleep(delay)


def _cluster_client(settings: Settings, name: str) -> RedisCluster:
    """A cluster client for everyday commands (it follows MOVED/ASK by itself)."""
    return ClusterCommandClient.from_url(
        settings.redis_url,
        protocol=2,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        max_connections=settings.max_connections,
        client_name=name,
        require_full_coverage=False,
    )
