"""SIGTERM drains a worker (in-flight handlers finish, exit 0); a second SIGINT stops it at once.

Either way, a later worker handles every message the first one did not finish.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer
from tests.chaos import (
    WorkerPool,
    group_pending,
    pending_entries,
    queue_streams,
    wait_for,
    worker_env,
)
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TOPIC = "chaos"
GROUP = "recorder"
QUEUES = 4
CONCURRENCY = 4
VISIBILITY = 2.0


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


def chaos_settings(server: EmbeddedServer, namespace: str) -> rmq.Settings:
    return make_settings(
        server.url, namespace,
        visibility_timeout=VISIBILITY, claim_interval=0.3, block_seconds=0.3,
        default_queues=QUEUES, shutdown_grace=10.0,
    )  # fmt: skip


async def send(settings: rmq.Settings, count: int) -> dict[tuple[str, str], str]:
    """Send `count` messages; return {(stream, entry id): msg_id}."""
    async with rmq.App(settings) as app:
        results = [await app.send(TOPIC, {"n": n}) for n in range(count)]
    streams = queue_streams(settings.namespace, TOPIC, QUEUES)
    by_entry = {(streams[r.queue_id], r.offset): r.msg_id for r in results}
    assert len(set(by_entry.values())) == count
    return by_entry


async def test_sigterm_drains_in_flight_handlers(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """SIGTERM while 4 slow handlers run: they all finish, the worker exits 0 with every finished
    message acknowledged (none left pending), and a second worker handles exactly the messages the
    first did not finish (nothing lost, nothing handled twice)."""
    settings = chaos_settings(server, namespace)
    by_entry = await send(settings, 40)
    sent = set(by_entry.values())
    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP)
    with WorkerPool(tmp_path, env) as pool:
        a = pool.start("a", RECORDER_CONCURRENCY=CONCURRENCY, RECORDER_SLEEP=0.4)
        await wait_for(lambda: len(a.records().starts) >= 3, 20, "handlers to start", 0.02)
        a.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await a.wait_exit(15) == 0, a.describe()
        drain_seconds = time.monotonic() - started

        records_a = a.records()
        assert records_a.starts, a.describe()
        assert not records_a.unfinished, f"interrupted handlers: {records_a.unfinished}"
        assert set(records_a.starts) == records_a.done_ids
        assert len(records_a.done_ids) < len(sent), "the worker finished everything before SIGTERM"
        assert "draining" in a.log_text(), a.describe()
        assert "stopped without draining" not in a.log_text(), a.describe()
        # The drain acknowledged what A finished; what it prefetched but never started went back
        # to the group (released, not lost).
        streams = queue_streams(namespace, TOPIC, QUEUES)
        pending = {by_entry[e] for e in pending_entries(client, streams, GROUP)}
        unacked = records_a.done_ids & pending
        assert not unacked, (
            f"{len(unacked)} message(s) handled during the drain were left unacknowledged (they "
            f"will be handled again)\n{a.describe()}"
        )
        left = len(sent) - len(records_a.done_ids)

        b = pool.start("b", RECORDER_CONCURRENCY=8)
        await wait_for(lambda: pool.done_union() >= sent, 20, "worker B to handle the rest")
        assert pool.done_union() == sent
        records_b = b.records()
        assert records_b.done_ids == sent - records_a.done_ids
        assert max(records_b.dones.values()) == 1
        await wait_for(lambda: group_pending(client, streams, GROUP) == 0, 10, "empty PEL")
        b.send_signal(signal.SIGTERM)
        assert await b.wait_exit(15) == 0, b.describe()
    print(f"A drained {len(records_a.done_ids)} in {drain_seconds:.2f}s; B handled {left}")


async def test_second_sigint_stops_at_once(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """SIGINT starts the drain; a second SIGINT exits at once, without waiting for the handlers
    (each takes 20 s). `App.run` returns normally after the forced stop (it logs "stopped without
    draining"), so the CLI exits 0. The interrupted messages stay pending and a later worker handles
    them (at the latest once the visibility timeout has passed): union == sent."""
    handler_seconds = 20.0
    settings = chaos_settings(server, namespace)
    sent = set((await send(settings, 12)).values())
    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP)
    with WorkerPool(tmp_path, env) as pool:
        a = pool.start("a", RECORDER_CONCURRENCY=CONCURRENCY, RECORDER_SLEEP=handler_seconds)
        await wait_for(
            lambda: len(a.records().starts) >= CONCURRENCY, 20, "handlers to start", 0.02
        )
        a.send_signal(signal.SIGINT)
        await wait_for(lambda: "draining" in a.log_text(), 10, "the first SIGINT to register", 0.02)
        assert a.running, a.describe()
        a.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = await a.wait_exit(10)
        exit_seconds = time.monotonic() - started
        assert code == 0, a.describe()
        assert exit_seconds < handler_seconds / 2, exit_seconds
        assert "stopped without draining" in a.log_text(), a.describe()

        records_a = a.records()
        assert not records_a.done_ids, "a handler finished although it takes 20 s"
        assert len(records_a.unfinished) == CONCURRENCY

        b = pool.start("b", RECORDER_CONCURRENCY=8)
        await wait_for(lambda: pool.done_union() >= sent, 20, "worker B to handle everything")
        assert pool.done_union() == sent
        assert records_a.unfinished <= b.records().done_ids
        streams = queue_streams(namespace, TOPIC, QUEUES)
        await wait_for(lambda: group_pending(client, streams, GROUP) == 0, 10, "empty PEL")
        b.send_signal(signal.SIGTERM)
        assert await b.wait_exit(15) == 0, b.describe()
    print(f"A exited {exit_seconds:.2f}s after the second SIGINT")
