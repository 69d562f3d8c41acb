"""The web examples in workers/: a WSGI app on the blocking client (served by wsgiref, 16
concurrent requests, and as a process interrupted with SIGINT) and an ASGI app whose lifespan
opens and closes an rmq.App (driven through the ASGI protocol, as an ASGI server would)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

import rmq
import rmq.sync
from rmq.embedded import free_port
from tests.sync.conftest import stored
from workers import web_asgi, web_wsgi

ROOT = Path(__file__).resolve().parent.parent


def post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_wsgi_app_sends_from_16_request_threads(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    client = rmq.sync.App(settings)
    server = web_wsgi.serve(web_wsgi.make_application(client), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        orders = [json.dumps({"id": n, "items": []}).encode() for n in range(160)]
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda b: post(f"{base}/orders", b), orders))
            events = list(pool.map(lambda n: post(f"{base}/events", b'{"n": %d}' % n), range(40)))
        assert {status for status, _ in replies + events} == {202}
        assert post(f"{base}/orders", b"not json")[0] == 400
        assert post(f"{base}/orders", b"[1, 2]") == (
            400,
            {"error": "the body must be a JSON object"},
        )
        status, doc = post(f"{base}/orders", json.dumps({"id": "a b"}).encode())  # a bad key
        assert status == 400 and "key" in doc["error"]
        assert post(f"{base}/nowhere", b"{}")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
        client.close()  # flushes the one-way events
    sent = stored(r, namespace, "orders")
    assert {doc["msg_id"] for _, doc in replies} == set(sent)
    assert len(stored(r, namespace, "events")) == 40


def test_wsgi_process_stores_its_one_way_sends_when_interrupted(
    redis_url: str, namespace: str, r: redis.Redis
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    env.update(RMQ_REDIS_URL=redis_url, RMQ_NAMESPACE=namespace, WEB_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "workers.web_wsgi"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().startswith("serving on")
        base = f"http://127.0.0.1:{port}"
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda n: post(f"{base}/events", b'{"n": %d}' % n)[0],
                                  range(200)))  # fmt: skip
        assert set(codes) == {202}
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(stored(r, namespace, "events")) == 200


class AsgiClient:
    """Just enough of an ASGI server to drive an application: the lifespan and HTTP requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lifespan_in: Any = None
        self.lifespan_out: list[dict[str, Any]] = []

    async def startup(self, tg: anyio.abc.TaskGroup) -> dict[str, Any]:
        send_in, self.lifespan_in = anyio.create_memory_object_stream[dict[str, Any]](4)
        self._send_in = send_in
        done = anyio.Event()

        async def receive() -> dict[str, Any]:
            message: dict[str, Any] = await self.lifespan_in.receive()
            return message

        async def send(message: dict[str, Any]) -> None:
            self.lifespan_out.append(message)
            done.set()

        tg.start_soon(self.app, {"type": "lifespan"}, receive, send)
        await send_in.send({"type": "lifespan.startup"})
        await done.wait()
        return self.lifespan_out[-1]

    async def shutdown(self) -> dict[str, Any]:
        count = len(self.lifespan_out)
        await self._send_in.send({"type": "lifespan.shutdown"})
        while len(self.lifespan_out) == count:
            await anyio.sleep(0.01)
        self.close()
        return self.lifespan_out[-1]

    def close(self) -> None:
        self._send_in.close()
        self.lifespan_in.close()

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        await self.app(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])


async def test_asgi_app_opens_rmq_in_its_lifespan(
    settings: rmq.Settings, r: redis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_asgi, "rmq_app", rmq.App(settings))
    client = AsgiClient(web_asgi.app)
    async with anyio.create_task_group() as tg:
        assert await client.startup(tg) == {"type": "lifespan.startup.complete"}
        results: list[tuple[int, dict[str, Any]]] = []

        async def order(n: int) -> None:
            results.append(await client.post("/orders", json.dumps({"id": n}).encode()))

        async with anyio.create_task_group() as requests:
            for n in range(50):
                requests.start_soon(order, n)
        for n in range(20):
            assert (await client.post("/events", b'{"n": %d}' % n))[0] == 202
        status, doc = await client.post("/orders", b"{")
        assert status == 400 and doc["error"].startswith("the body is not JSON")
        assert await client.shutdown() == {"type": "lifespan.shutdown.complete"}
    assert {status for status, _ in results} == {202}
    assert {doc["msg_id"] for _, doc in results} == set(stored(r, namespace, "orders"))
    assert len(stored(r, namespace, "events")) == 20  # flushed by the lifespan's shutdown


async def test_asgi_startup_fails_cleanly_without_redis(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    monkeypatch.setattr(web_asgi, "rmq_app", rmq.App(redis_url=url, namespace=namespace,
                                                    startup_timeout=0.2))  # fmt: skip
    client = AsgiClient(web_asgi.app)
    async with anyio.create_task_group() as tg:
        reply = await client.startup(tg)
    client.close()
    assert reply["type"] == "lifespan.startup.failed"
    assert "unavailable" in reply["message"] and "secret" not in reply["message"]
