"""SIGKILL a worker while it reclaims a dead consumer's backlog: nothing is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
MESSAGES = 20_000


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url, socket_timeout=30)
    yield c
    c.close()


async def test_sigkill_while_reclaiming_loses_nothing(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """20,000 entries pending for a consumer that died. Worker A claims them in batches and is
    SIGKILLed half-way (holding a claimed batch); worker B claims what A held and what nobody had
    claimed yet. Every message is handled at least once; the group ends with nothing pending."""
    settings = make_settings(
        server.url, namespace, visibility_timeout=1.0, block_seconds=0.3, default_queues=QUEUES,
    )  # fmt: skip
    sent: set[str] = set()
    async with rmq.App(settings) as app:
        for start in range(0, MESSAGES, 500):
            batch = await app.send_batch(TOPIC, list(range(start, start + 500)))
            sent.update(r.msg_id for r in batch)
    streams = queue_streams(namespace, TOPIC, QUEUES)
    for stream in streams:
        client.xgroup_create(stream, GROUP, id="0")
        while client.xreadgroup(GROUP, "dead", {stream: ">"}, count=2_000):
            pass  # delivered to a consumer that never acknowledges: a crashed one
    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP)
    with WorkerPool(tmp_path, env) as pool:
        a = pool.start("a", RECORDER_CONCURRENCY=20, RECORDER_SLEEP=0.002)
        await wait_for(lambda: len(a.records().done_ids) >= 2_000, 30, "A to reclaim a part")
        a.kill()
        done_by_a = a.records().done_ids
        assert len(done_by_a) < MESSAGES, "A reclaimed everything before the kill"
        b = pool.start("b", RECORDER_CONCURRENCY=20)
        await wait_for(lambda: pool.done_union() >= sent, 60, "B to handle the rest")
        assert pool.done_union() == sent
        await wait_for(lambda: group_pending(client, streams, GROUP) == 0, 20, "an empty PEL")
        assert b.records().done_ids >= sent - done_by_a
        b.send_signal(2)
        assert await b.wait_exit(15) == 0, b.describe()
