"""A TCP fault proxy between rmq and a real Redis (asyncio, loopback only).

Every connection a client opens to `proxy.url` gets its own connection to the upstream server;
bytes are pumped both ways, `up` (client -> Redis) and `down` (Redis -> client), and faults are
applied per direction:

- `delay(lo, hi)`: every chunk waits a random time in [lo, hi] seconds (order is kept);
- `drop(direction)`: chunks are discarded, the connection stays open;
- `blackhole()`: half-open links: every connection, open now or accepted later, forwards
  nothing in either direction and never closes (until `heal()`; the ones it froze stay dead);
- `freeze()`: the connections open now go half-open (dead forever); new ones work;
- `reset_all()`: every open connection is reset (RST) now;
- `refuse()`: new connections are reset at once (Redis unreachable) until `heal()`;
- `cut_after(n, direction)`: each connection is reset after `n` more bytes in that direction;
- one-shot, command-aware: `drop_request(cmd)` (the next request containing `cmd` is never
  forwarded and its connection closes), `drop_reply(cmd)` / `reset_reply(cmd)` (the request is
  executed, then the connection is closed / reset before its reply reaches the client),
  `blackhole_reply(cmd)` (the request is executed, the reply never comes, the connection stays
  open). With `every=True` the trigger stays armed. `cmd` is any bytes the request contains: a
  command name, or a script's SHA to target one script.

Reply faults rely on how rmq's clients talk: one request batch per connection at a time (a wire
round trip, a pooled command or pipeline), so the bytes that come down after a request are its
replies. `fired` counts triggered one-shot faults; `stats` counts connections and resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from dataclasses import dataclass, field

from rmq.embedded import free_port

__all__ = ["FaultProxy", "FlakyProxy", "ProxyStats"]

UP, DOWN, BOTH = "up", "down", "both"
_CHUNK = 65536


@dataclass
class ProxyStats:
    """What the proxy saw and did."""

    accepted: int = 0
    refused: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    triggers: dict[str, int] = field(default_factory=dict)


@dataclass
class _Trigger:
    needle: bytes
    action: str  # drop_request | drop_reply | reset_reply | blackhole_reply
    every: bool


class _Link:
    """One client connection and its upstream connection."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> None:
        self.proxy = proxy
        self.client_r, self.client_w = client
        self.up_r: asyncio.StreamReader | None = upstream[0] if upstream else None
        self.up_w: asyncio.StreamWriter | None = upstream[1] if upstream else None
        self.dead = False  # half-open: forwards nothing, never closes
        self.reply_fault: str | None = None  # what to do to the next bytes coming down
        self.cut: dict[str, int] = {}  # direction -> bytes left before a reset
        self.closed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self, rst: bool = True) -> None:
        """Close both sides at once (RST when `rst`)."""
        if self.closed.is_set():
            return
        self.closed.set()
        if rst:
            self.proxy.stats.resets += 1
        for writer in (self.client_w, self.up_w):
            if writer is None:
                continue
            if rst:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
            writer.transport.abort()


class FaultProxy:
    """A fault-injecting TCP proxy in front of a Redis on 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port: int, *, seed: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._random = random.Random(seed)
        self._delay: dict[str, tuple[float, float]] = {}
        self._drop: set[str] = set()
        self._blackhole = False
        self._refuse = False
        self._cut: dict[str, int] = {}
        self._triggers: list[_Trigger] = []

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def fired(self) -> int:
        """How many command-aware faults fired."""
        return sum(self.stats.triggers.values())

    @property
    def open_links(self) -> int:
        return sum(1 for link in self._links if not link.closed.is_set())

    # ------------------------------------------------------------------ faults

    def delay(self, lo: float, hi: float | None = None, direction: str = BOTH) -> None:
        """Delay every chunk by a random time in [lo, hi] seconds (lo when hi is None)."""
        for d in _directions(direction):
            self._delay[d] = (lo, lo if hi is None else hi)

    def drop(self, direction: str = BOTH) -> None:
        """Discard every chunk in `direction` (connections stay open)."""
        self._drop.update(_directions(direction))

    def blackhole(self) -> None:
        """Every connection, open now or accepted from now on, goes half-open: accepted, never
        answered, never closed. `heal()` lets new connections work again."""
        self._blackhole = True
        self.freeze()

    def freeze(self) -> None:
        """The connections open now go half-open for good; new connections work."""
        for link in self._links:
            link.dead = True

    def reset_all(self) -> int:
        """Reset (RST) every open connection now; returns how many."""
        links = [link for link in self._links if not link.closed.is_set()]
        for link in links:
            link.abort()
        return len(links)

    def refuse(self) -> None:
        """Reset new connections at once (as if nothing listened) until `heal()`."""
        self._refuse = True

    def cut_after(self, nbytes: int, direction: str = DOWN) -> None:
        """Reset each connection (open now or new) after `nbytes` more bytes in `direction`."""
        for d in _directions(direction):
            self._cut[d] = nbytes
            for link in self._links:
                link.cut[d] = nbytes

    def heal(self) -> None:
        """Stop every continuous fault (connections frozen before stay dead)."""
        self._delay.clear()
        self._drop.clear()
        self._blackhole = False
        self._refuse = False
        self._cut.clear()
        self._triggers.clear()
        for link in self._links:
            link.cut.clear()

    def drop_request(self, command: str | bytes, *, every: bool = False) -> None:
        self._arm(command, "drop_request", every)

    def drop_reply(self, command: str | bytes, *, every: bool = False) -> None:
        self._arm(command, "drop_reply", every)

    def reset_reply(self, command: str | bytes, *, every: bool = False) -> None:
        self._arm(command, "reset_reply", every)

    def blackhole_reply(self, command: str | bytes, *, every: bool = False) -> None:
        self._arm(command, "blackhole_reply", every)

    def _arm(self, command: str | bytes, action: str, every: bool) -> None:
        needle = command.encode() if isinstance(command, str) else command
        self._triggers.append(_Trigger(needle, action, every))

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for link in list(self._links):
            link.abort(rst=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # ------------------------------------------------------------------ pumping

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._refuse:
                self.stats.refused += 1
                _Link(self, (client_r, client_w), None).abort()
                return
            self.stats.accepted += 1
            if self._blackhole:
                link = _Link(self, (client_r, client_w), None)
                link.dead = True
            else:
                try:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                except OSError:
                    _Link(self, (client_r, client_w), None).abort()
                    return
                link = _Link(self, (client_r, client_w), upstream)
                link.cut = dict(self._cut)
            self._links.add(link)
            try:
                if link.up_r is None:  # blackholed from the start: read and discard forever
                    await _swallow(client_r, link)
                    return
                link.tasks = [
                    asyncio.create_task(self._pump(link, UP)),
                    asyncio.create_task(self._pump(link, DOWN)),
                ]
                await link.closed.wait()
                for pump in link.tasks:
                    pump.cancel()
                await asyncio.gather(*link.tasks, return_exceptions=True)
            finally:
                self._links.discard(link)
                link.abort(rst=False)
        finally:
            self._tasks.discard(task)

    async def _pump(self, link: _Link, direction: str) -> None:
        reader = link.client_r if direction == UP else link.up_r
        writer = link.up_w if direction == UP else link.client_w
        assert reader is not None and writer is not None
        last_due = 0.0
        pending = b""
        delayed: asyncio.Queue[tuple[float, bytes]] | None = None
        try:
            while not link.closed.is_set():
                data = await reader.read(_CHUNK)
                if not data:
                    link.abort(rst=False)
                    return
                if link.dead:
                    continue  # half-open: swallowed
                if direction == UP and self._triggers:
                    pending += data
                    if _count_commands(pending) is None:
                        continue  # a request split over several reads
                    data, pending = pending, b""
                    if self._request_trigger(link, data):
                        return
                elif direction == DOWN and link.reply_fault is not None:
                    fault, link.reply_fault = link.reply_fault, None
                    self._count(fault)
                    if fault == "blackhole_reply":
                        link.dead = True
                        continue
                    link.abort(rst=fault == "reset_reply")
                    return
                if direction in self._drop:
                    continue
                left = link.cut.get(direction)
                if left is not None and len(data) >= left:
                    if left:
                        writer.write(data[:left])
                        with contextlib.suppress(OSError):
                            await writer.drain()
                    link.abort()
                    return
                if left is not None:
                    link.cut[direction] = left - len(data)
                if direction == UP:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                span = self._delay.get(direction)
                if span is not None or delayed is not None:
                    # latency, not bandwidth: keep reading; a forwarder writes each chunk when due
                    if delayed is None:
                        delayed = asyncio.Queue()
                        link.tasks.append(asyncio.create_task(_forward(link, writer, delayed)))
                    lo, hi = span or (0.0, 0.0)
                    due = max(last_due, time.monotonic() + self._random.uniform(lo, hi))
                    last_due = due
                    delayed.put_nowait((due, data))
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            link.abort(rst=False)

    def _count(self, fault: str) -> None:
        self.stats.triggers[fault] = self.stats.triggers.get(fault, 0) + 1

    def _request_trigger(self, link: _Link, data: bytes) -> bool:
        """Apply an armed command-aware fault to request `data`; True when the link is done."""
        for trigger in self._triggers:
            if trigger.needle not in data:
                continue
            if not trigger.every:
                self._triggers.remove(trigger)
            if trigger.action == "drop_request":
                self._count("drop_request")
                link.abort(rst=False)
                return True
            link.reply_fault = trigger.action
            return False
        return False


class FlakyProxy(FaultProxy):
    """The proxy the producer and transaction tests use: `drop_request` / `drop_reply` once."""


async def _forward(
    link: _Link, writer: asyncio.StreamWriter, chunks: asyncio.Queue[tuple[float, bytes]]
) -> None:
    """Write delayed chunks in order, each when it is due."""
    with contextlib.suppress(ConnectionError, OSError):
        while not link.closed.is_set():
            due, data = await chunks.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if link.closed.is_set() or link.dead:
                return
            writer.write(data)
            await writer.drain()


async def _swallow(reader: asyncio.StreamReader, link: _Link) -> None:
    """Read and discard until the client goes away (a half-open link from the start)."""
    with contextlib.suppress(ConnectionError, OSError):
        while not link.closed.is_set():
            if not await reader.read(_CHUNK):
                return


def _directions(direction: str) -> tuple[str, ...]:
    if direction == BOTH:
        return (UP, DOWN)
    if direction not in (UP, DOWN):
        raise ValueError(f"direction is up, down or both, got {direction!r}")
    return (direction,)


def _count_commands(request: bytes) -> int | None:
    """Number of complete RESP commands in `request`, or None if the last one is incomplete."""
    count, i = 0, 0
    try:
        while i < len(request):
            if request[i : i + 1] != b"*":
                return count + 1  # an inline command (PING\r\n): take it as it is
            end = request.index(b"\r\n", i)
            items = int(request[i + 1 : end])
            i = end + 2
            for _ in range(items):
                end = request.index(b"\r\n", i)
                length = int(request[i + 1 : end])
                i = end + 2 + length + 2
            count += 1
    except ValueError:
        return None
    return count if i == len(request) else None
