"""A web front end on WSGI (what Django and Flask run on) that sends orders with the blocking
client, `rmq.sync`: no event loop in the web app, one client shared by every request thread.

    python -m workers.web_wsgi                    # http://127.0.0.1:8000 (WEB_PORT)
    curl -X POST localhost:8000/orders -d '{"id": 1, "items": [{"qty": 1, "price_cents": 900}]}'

- `POST /orders` sends the order (`client.send`: blocks until it is stored) and answers 202 with
  where it went; `POST /events` fires and forgets (`client.send_oneway`). Concurrent requests
  share round trips to Redis.
- Bad input is a 400 with a JSON error, Redis being away a 503: never a 500 or a traceback.
- The client connects on the first request and is closed (every queued message stored) when
  the process exits. In Django, keep `client` in a module (`myproject/messaging.py`) and call
  `client.send(...)` from views; in Flask the same, from route functions. Under gunicorn with
  `--preload`, each worker process opens its own connection on first use.
"""

from __future__ import annotations

import json
import os
import socketserver
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import rmq
import rmq.sync

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

client = rmq.sync.App()  # Settings from RMQ_*; connects on first use


# --8<-- [start:view]
def make_application(client: rmq.sync.App) -> WSGIApp:
    """The WSGI application, sending with `client`."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        try:
            if (method, path) == ("POST", "/orders"):
                order = _json_object(environ)
                result = client.send("orders", order, keys=[f"order-{order.get('id')}"])
                return _reply(start_response, "202 Accepted", {
                    "msg_id": result.msg_id, "queue_id": result.queue_id,
                    "offset": result.offset,
                })  # fmt: skip
            if (method, path) == ("POST", "/events"):
                client.send_oneway("events", _json_object(environ))
                return _reply(start_response, "202 Accepted", {"queued": True})
            return _reply(start_response, "404 Not Found", {"error": f"no route {method} {path}"})
        except (ValueError, rmq.ConfigError, rmq.EncodeError, rmq.MessageTooLarge) as exc:
            return _reply(start_response, "400 Bad Request", {"error": str(exc)})
        except rmq.RMQError as exc:
            return _reply(start_response, "503 Service Unavailable", {"error": str(exc)})

    return application


# --8<-- [end:view]


def _json_object(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        body = json.loads(environ["wsgi.input"].read(length) or b"null")
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _reply(start_response: StartResponse, status: str, doc: dict[str, Any]) -> list[bytes]:
    data = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])  # fmt: skip
    return [data]


application = make_application(client)


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per request (as Django's runserver and gunicorn's threads)."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog (socketserver's default, 5, resets bursts)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 8000) -> ThreadingWSGIServer:
    """A threaded WSGI server for `app` (call `.serve_forever()`)."""
    server = make_server(host, port, app, ThreadingWSGIServer, QuietHandler)
    assert isinstance(server, ThreadingWSGIServer)
    return server


if __name__ == "__main__":
    port = int(os.environ.get("WEB_PORT", "8000"))
    with serve(application, port=port) as httpd:
        print(f"serving on http://127.0.0.1:{port}", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
