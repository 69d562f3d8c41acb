"""Redis restarts *empty* (no persistence, or a replica promoted without the data) while producers
keep sending: the worker re-creates its group from the last entry it saw, so every send
acknowledged after the restart is delivered (re-creating it at "last", the default start, skipped
what producers had sent before the worker noticed the group was gone)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import rmq
from rmq.embedded import EmbeddedServer
from tests.helpers import make_settings, running, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90)]


@pytest.mark.parametrize("mode", ["concurrently", "orderly", "pull"])
async def test_sends_acknowledged_after_an_empty_restart_are_delivered(
    server_factory: type[EmbeddedServer], namespace: str, mode: str
) -> None:
    server = server_factory().start()  # no AOF: a restart loses everything
    settings = make_settings(
        server.url, namespace, default_queues=2, block_seconds=0.3, socket_timeout=1.0,
        connect_timeout=0.5, send_timeout=1.0, lease_ttl=1.0, rebalance_interval=0.2,
    )  # fmt: skip
    seen: set[str] = set()
    # The worker backs off ~1 s after the connection drops, so the producer re-creates the topic
    # and sends before the worker finds its group gone (the case that lost messages).
    worker = rmq.App(settings.replace(backoff_base=1.5, backoff_cap=1.5))
    if mode != "pull":
        extra: dict[str, Any] = {"mode": "orderly"} if mode == "orderly" else {}

        @worker.consumer("orders", group="billing", **extra)
        async def handle(msg: rmq.Message) -> None:
            seen.add(msg.body)

    producer = rmq.App(settings)
    acked_after: list[str] = []
    async with anyio.create_task_group() as tg, producer:
        if mode == "pull":
            tg.start_soon(pull_forever, worker, seen)
            await anyio.sleep(0.5)
            context = None
        else:
            context = running(worker)
            await context.__aenter__()
        await producer.send("orders", "before")
        await wait_until(lambda: "before" in seen, what="the first message")
        server.kill()
        server.start()  # empty: topics, groups and streams are gone
        # Producers re-create the topic and its streams before the worker notices anything.
        for n in range(50):
            result = await retry_send(producer, f"after-{n}")
            acked_after.append(result)
        await wait_until(lambda: set(acked_after) <= seen, timeout=20,
                         what="every acknowledged send after the restart")  # fmt: skip
        if context is not None:
            await context.__aexit__(None, None, None)
        tg.cancel_scope.cancel()
    assert set(acked_after) <= seen


async def retry_send(app: rmq.App, body: str) -> str:
    """Send until Redis accepts it (it may still be starting); the body, once acknowledged."""
    for _ in range(100):
        try:
            await app.send("orders", body)
            return body
        except rmq.BrokerError:
            await anyio.sleep(0.05)
    raise AssertionError(f"{body} was never acknowledged")


async def pull_forever(app: rmq.App, seen: set[str]) -> None:
    async with app:
        while True:
            try:
                async with app.pull_consumer("orders", "billing") as pc:
                    while True:
                        msgs = await pc.receive(32, invisible=5, wait=0.2)
                        seen.update(m.body for m in msgs)
                        if msgs:
                            await pc.ack(*msgs)
            except rmq.BrokerError:
                await anyio.sleep(1.0)
