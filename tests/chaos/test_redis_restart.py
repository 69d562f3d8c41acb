"""SIGKILL the Redis server (AOF everysec) under load, restart it: nothing acknowledged is lost."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer
from tests.chaos import WorkerPool, group_pending, queue_streams, wait_for, worker_env
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TOPIC = "chaos"
GROUP = "recorder"
QUEUES = 4
BACKLOG = 3_000


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory(appendonly=True, appendfsync="everysec").start()


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


async def test_redis_kill_and_restart(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """A backlog of 3,000, then a producer sends one message at a time while Redis (holding
    hundreds of entries pending for the worker) is SIGKILLed and restarted.

    Asserted: every message whose send returned a SendResult is handled by the worker, which is the
    same process as before the crash (it reconnected by itself); sends failed while Redis was down
    and succeeded again after the restart; the group's pending list empties; SIGTERM exits 0.
    """
    settings = make_settings(
        server.url, namespace,
        visibility_timeout=1.5, claim_interval=0.3, block_seconds=0.3, default_queues=QUEUES,
        send_timeout=1.0, socket_timeout=2.0, connect_timeout=1.0,
    )  # fmt: skip
    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP)
    acked: list[str] = []
    acked_after_restart: list[str] = []
    failures: Counter[str] = Counter()
    restarted = anyio.Event()
    stop_sending = anyio.Event()

    app = rmq.App(settings)
    streams = queue_streams(namespace, TOPIC, QUEUES)
    with WorkerPool(tmp_path, env) as pool:
        async with app:
            # A backlog, so the worker holds hundreds of entries (prefetched, running, being
            # acknowledged) when Redis dies.
            for start in range(0, BACKLOG, 500):
                batch = await app.send_batch(TOPIC, list(range(start, start + 500)))
                acked.extend(r.msg_id for r in batch)
            worker = pool.start("w", RECORDER_CONCURRENCY=10, RECORDER_SLEEP=0.01)
            await worker.wait_ready()
            pid = worker.pid

            async def produce() -> None:
                n = 0
                while not stop_sending.is_set():
                    n += 1
                    try:
                        result = await app.send(TOPIC, {"n": n})
                    except Exception as exc:
                        failures[type(exc).__name__] += 1
                        await anyio.sleep(0.02)
                        continue
                    acked.append(result.msg_id)
                    if restarted.is_set():
                        acked_after_restart.append(result.msg_id)
                    await anyio.sleep(0.002)

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                await wait_for(lambda: len(worker.records().dones) >= 300, 20, "first messages")
                held_at_kill = group_pending(client, streams, GROUP)
                server.kill()
                acked_before_kill = len(acked)
                await anyio.sleep(1.0)
                await anyio.to_thread.run_sync(server.restart)
                restarted.set()
                await wait_for(lambda: len(acked_after_restart) >= 200, 20, "sends to resume")
                stop_sending.set()

        assert held_at_kill >= 100, f"only {held_at_kill} entries pending when Redis died"
        assert failures, "no send failed while Redis was down"
        assert acked_before_kill > 0
        acked_ids = set(acked)
        assert len(acked_ids) == len(acked)

        def all_handled() -> bool:
            assert worker.running, worker.describe()
            return acked_ids <= worker.records().done_ids

        try:
            await wait_for(all_handled, 30, "the worker to handle every acknowledged message")
        except AssertionError:
            missing = acked_ids - worker.records().done_ids
            raise AssertionError(
                f"{len(missing)} acknowledged message(s) never handled, e.g. {sorted(missing)[:5]}"
                f"\n{worker.describe()}"
            ) from None
        assert worker.pid == pid and worker.running
        await wait_for(
            lambda: group_pending(client, streams, GROUP) == 0, 10, "the pending list to empty"
        )
        log = worker.log_text()
        assert "Redis unavailable" in log or "maintenance failed" in log, worker.describe()

        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert await worker.wait_exit(15) == 0, worker.describe()
        print(
            f"{len(acked)} acked ({acked_before_kill} before the kill, {held_at_kill} pending, "
            f"{len(acked_after_restart)} after the restart), failures {dict(failures)}; "
            f"worker handled {sum(worker.records().dones.values())}; "
            f"stopped in {time.monotonic() - started:.1f}s"
        )
