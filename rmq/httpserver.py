"""A minimal HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`, on the worker's event loop.

GET and HEAD only; every response closes the connection. Routes are async callables returning
(status, content type, body), so a route can read Redis at request time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
from anyio.abc import TaskStatus

__all__ = ["Response", "Route", "serve", "text"]

log = logging.getLogger("rmq.http")

Response = tuple[int, str, bytes]
Route = Callable[[], Awaitable[Response]]
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
_REASONS |= {400: "Bad Request", 503: "Service Unavailable"}
_READ_SECONDS = 10.0


def text(status: int, body: str) -> Response:
    """A plain-text response."""
    return status, "text/plain; charset=utf-8", body.encode()


async def serve(
    host: str,
    port: int,
    routes: Mapping[str, Route],
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `routes` until cancelled; reports the bound port (useful with port 0) when ready."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = _request_line(head)
            if method not in ("GET", "HEAD"):
                response = text(405, "method not allowed\n")
            elif (route := routes.get(path)) is None:
                response = text(404, "not found\n")
            else:
                try:
                    response = await route()
                except Exception:
                    log.exception("%s failed", path)
                    response = text(500, "internal error\n")
            status, content_type, body = response
            header = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(header.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except ValueError:
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    bound = int(server.sockets[0].getsockname()[1])
    log.info("serving %s on http://%s:%d", ", ".join(sorted(routes)), host, bound)
    task_status.started(bound)
    async with server:
        await server.serve_forever()


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(line)
    return parts[0], parts[1].split("?", 1)[0]
