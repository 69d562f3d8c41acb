"""A web front end on ASGI (what FastAPI and Starlette run on) that sends orders with the async
`rmq.App`, opened and closed by the ASGI lifespan: one connection for the whole process.

    uvicorn workers.web_asgi:app                  # or any ASGI server

With FastAPI the lifespan is the same three lines:

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI):
        async with rmq_app:                       # connects; on the way out flushes and closes
            yield

    api = FastAPI(lifespan=lifespan)

    @api.post("/orders", status_code=202)
    async def create_order(order: dict) -> dict:
        result = await rmq_app.send("orders", order)
        return {"msg_id": result.msg_id}

This module is that, as a plain ASGI application (no framework needed): `POST /orders` awaits
`rmq_app.send` and answers 202; `POST /events` uses `send_oneway`; bad input is a 400 with a
JSON error, Redis being away a 503. A startup that cannot reach Redis fails the lifespan
(`lifespan.startup.failed`), so the server does not start half-working.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import rmq

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

rmq_app = rmq.App()  # Settings from RMQ_*


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)


# --8<-- [start:lifespan]
async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await rmq_app.__aenter__()
            except rmq.RMQError as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await rmq_app.__aexit__(None, None, None)  # flushes one-way sends, then closes
            await send({"type": "lifespan.shutdown.complete"})
            return


# --8<-- [end:lifespan]


async def _http(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    method, path = scope["method"], scope["path"]
    try:
        if (method, path) == ("POST", "/orders"):
            order = await _json_object(receive)
            result = await rmq_app.send("orders", order, keys=[f"order-{order.get('id')}"])
            doc = {"msg_id": result.msg_id, "queue_id": result.queue_id, "offset": result.offset}
            await _reply(send, 202, doc)
        elif (method, path) == ("POST", "/events"):
            rmq_app.send_oneway("events", await _json_object(receive))
            await _reply(send, 202, {"queued": True})
        else:
            await _reply(send, 404, {"error": f"no route {method} {path}"})
    except (ValueError, rmq.ConfigError, rmq.EncodeError, rmq.MessageTooLarge) as exc:
        await _reply(send, 400, {"error": str(exc)})
    except rmq.RMQError as exc:
        await _reply(send, 503, {"error": str(exc)})


async def _json_object(receive: Receive) -> dict[str, Any]:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        doc = json.loads(body or b"null")
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    return doc


async def _reply(send: Send, status: int, doc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
