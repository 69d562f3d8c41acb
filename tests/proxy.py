"""A TCP proxy in front of a real Redis that can lose a command or its reply, once, on demand.

It simulates the network failures a producer must survive without duplicating a message:
- `drop_request("EVALSHA")`: the next request containing EVALSHA is never forwarded;
- `drop_reply("EVALSHA")`: the next such request is executed by Redis, but the client connection
  is closed before the reply reaches it (the ambiguous case: "did my send land?").
"""

from __future__ import annotations

import asyncio
import contextlib

from rmq.embedded import free_port


class FlakyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._mode: str | None = None
        self._needle = b""
        self.fired = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_request(self, command: str) -> None:
        self._mode, self._needle = "request", command.encode()

    def drop_reply(self, command: str) -> None:
        self._mode, self._needle = "reply", command.encode()

    async def __aenter__(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            while True:
                data = await client_r.read(65536)
                if not data:
                    return
                while _count_commands(data) is None:  # a request split over several reads
                    more = await client_r.read(65536)
                    if not more:
                        return
                    data += more
                armed = self._mode is not None and self._needle in data
                if armed and self._mode == "request":
                    self._mode = None
                    self.fired += 1
                    return
                up_w.write(data)
                await up_w.drain()
                reply = await _read_replies(up_r, data)
                if armed and self._mode == "reply":
                    self._mode = None
                    self.fired += 1
                    return
                client_w.write(reply)
                await client_w.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            for writer in (client_w, up_w):
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


async def _read_replies(reader: asyncio.StreamReader, request: bytes) -> bytes:
    """Read one RESP reply per command in `request` (clients pipeline several at once)."""
    count = _count_commands(request) or 0
    out = bytearray()
    for _ in range(count):
        out += await _read_one(reader)
    return bytes(out)


def _count_commands(request: bytes) -> int | None:
    """Number of complete RESP commands in `request`, or None if the last one is incomplete."""
    count, i = 0, 0
    try:
        while i < len(request):
            assert request[i : i + 1] == b"*", request[i : i + 20]
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


async def _read_one(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readuntil(b"\r\n")
    kind = line[:1]
    if kind in (b"+", b"-", b":"):
        return line
    if kind == b"$":
        length = int(line[1:-2])
        if length < 0:
            return line
        return line + await reader.readexactly(length + 2)
    if kind == b"*":
        items = int(line[1:-2])
        out = bytearray(line)
        for _ in range(max(items, 0)):
            out += await _read_one(reader)
        return bytes(out)
    raise ValueError(f"unexpected RESP reply {line!r}")
