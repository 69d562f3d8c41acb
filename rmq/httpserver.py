"""A minimal HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`, on the worker's event loop.

GET and HEAD only; every response closes the connection. Routes are async callables returning a
`Response`, so a route can read Redis at request time. A route either takes no argument or takes
the `Request` (method, path and lower-cased headers: `/metrics` negotiates its format and
compression from `Accept` and `Accept-Encoding`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple, cast

import anyio
from anyio.abc import TaskStatus

__all__ = ["Request", "Response", "Route", "serve", "text"]

log = logging.getLogger("rmq.http")


class Request(NamedTuple):
    """What a route may look at: the method, the path (without the query) and the headers."""

    method: str
    path: str
    headers: Mapping[str, str]
    """Header names lower-cased; a repeated header's values joined by ", "."""


class Response(NamedTuple):
    """A route's answer; `headers` are extra ones (Content-Type and Content-Length are set)."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


RequestRoute = Callable[[Request], Awaitable[Response]]
Route = Callable[[], Awaitable[Response]] | RequestRoute
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
_REASONS |= {400: "Bad Request", 503: "Service Unavailable"}
_READ_SECONDS = 10.0


def text(status: int, body: str) -> Response:
    """A plain-text response."""
    return Response(status, "text/plain; charset=utf-8", body.encode())


def _with_request(route: Route) -> RequestRoute:
    """`route` as a callable taking the request (a route without parameters ignores it)."""
    if inspect.signature(route).parameters:
        return cast(RequestRoute, route)
    simple = cast(Callable[[], Awaitable[Response]], route)

    async def ignoring(_request: Request) -> Response:
        return await simple()

    return ignoring


async def serve(
    host: str,
    port: int,
    routes: Mapping[str, Route],
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `routes` until cancelled; reports the bound port (useful with port 0) when ready."""
    handlers = {path: _with_request(route) for path, route in routes.items()}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            request = _parse(head)
            if request.method not in ("GET", "HEAD"):
                response = text(405, "method not allowed\n")
            elif (route := handlers.get(request.path)) is None:
                response = text(404, "not found\n")
            else:
                try:
                    response = await route(request)
                except Exception:
                    log.exception("%s failed", request.path)
                    response = text(500, "internal error\n")
            status, content_type, body, *extra = response
            lines = [
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}",
                *(f"{name}: {value}" for name, value in (extra[0] if extra else ())),
                "Connection: close",
            ]
            header = "\r\n".join(lines) + "\r\n\r\n"
            writer.write(header.encode("latin-1") + (b"" if request.method == "HEAD" else body))
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


def _parse(head: bytes) -> Request:
    """The request line and headers; ValueError when they are not HTTP/1.x."""
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(request_line)
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(line)
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Request(parts[0], parts[1].split("?", 1)[0], headers)
