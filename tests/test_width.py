"""Width and recovery: a worker with a thousand topics starts and consumes, holding a handful of
connections; a dead consumer's 20k pending entries are all reclaimed; against a real Redis and a
real 3-primary cluster. (How fast: bench/scale.py; these check what happens, not how fast.)"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedCluster
from rmq.keys import NamespaceKeys
from tests.conftest import server_binary
from tests.helpers import make_settings, running, wait_until

TOPICS = 1000
CONNECTIONS = 8
"""Besides the read lanes: the pooled client, the outcome writer, upkeep, the scheduler and its
subscription, the trimmer's and the producer's: a constant, whatever the number of topics."""


def connections(client: redis.Redis, name: str) -> int:
    """CLIENT LIST entries named after the app (rmq names every connection `rmq:<app name>`)."""
    return sum(1 for c in client.client_list() if c.get("name") == f"rmq:{name}")


def wide_app(settings: rmq.Settings, seen: set[str]) -> rmq.App:
    """TOPICS topics: half of them read by one group name, half by a group of their own."""
    app = rmq.App(settings)
    for n in range(TOPICS):
        group = "shared" if n % 2 else f"own-{n}"

        async def handle(msg: rmq.Message) -> None:
            seen.add(msg.body)

        app.consumer(f"t{n}", group=group)(handle)
    return app


@pytest.mark.timeout(120)
async def test_a_thousand_topics_start_and_consume(
    redis_url: str, namespace: str, r: redis.Redis
) -> None:
    settings = make_settings(redis_url, namespace, default_queues=4)
    seen: set[str] = set()
    app = wide_app(settings, seen)
    async with running(app), rmq.App(settings) as sender:
        held = connections(r, app.name)
        assert held <= CONNECTIONS + settings.read_lanes, f"{held} connections, {TOPICS} topics"
        for n in range(TOPICS):
            sender.send_oneway(f"t{n}", f"m{n}")
        await sender.flush()
        await wait_until(lambda: len(seen) == TOPICS, 60, "one message per topic")
        later = connections(r, app.name)
        assert later <= CONNECTIONS + settings.read_lanes, f"{later} connections, {TOPICS} topics"
    lanes = app.push_runtime.lanes
    assert len(lanes) == settings.read_lanes  # one group lane + the doorbell for the 500 others
    assert sum(lane.doorbell for lane in lanes) == 1


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    started = EmbeddedCluster(3, server_binary())
    started.start()
    try:
        yield started
    finally:
        started.cleanup()


@pytest.mark.cluster
@pytest.mark.timeout(180)
async def test_a_thousand_topics_on_a_cluster(cluster: EmbeddedCluster, namespace: str) -> None:
    """On a cluster a blocking read names one slot, so each node gets one polling lane: reading
    connections per node stay constant too."""
    settings = make_settings(cluster.url, namespace, default_queues=2)
    seen: set[str] = set()
    app = wide_app(settings, seen)
    async with running(app), rmq.App(settings) as sender:
        for n in range(TOPICS):
            sender.send_oneway(f"t{n}", f"m{n}")
        await sender.flush()
        await wait_until(lambda: len(seen) == TOPICS, 90, "one message per topic")
        per_node = {}
        for node in cluster.servers:
            with redis.Redis(port=node.port) as client:
                per_node[node.port] = connections(client, app.name)
    # plus the cluster client's pools, which send up to 8 commands of a "pipeline" at once
    limit = CONNECTIONS + settings.read_lanes + 8
    assert all(n <= limit for n in per_node.values()), per_node
    assert {lane.mode for lane in app.push_runtime.lanes} == {"poll"}


@pytest.mark.timeout(120)
async def test_a_dead_consumers_20k_pending_are_all_reclaimed(
    redis_url: str, namespace: str, r: redis.Redis
) -> None:
    """20,000 entries pending for a consumer that died: once idle past the visibility timeout
    they are claimed in batches while claims come back full, each handled exactly once."""
    settings = make_settings(redis_url, namespace, default_queues=4, visibility_timeout=1.0)
    handled: list[int] = []
    app = rmq.App(settings)

    @app.consumer("crash", group="g", start="first")
    async def handle(msg: rmq.Message) -> None:
        handled.append(msg.body)

    async with app:
        for start in range(0, 20_000, 500):
            await app.send_batch("crash", list(range(start, start + 500)))
    keys = NamespaceKeys(namespace)
    for q in range(4):
        while r.xreadgroup("g", "dead", {keys.queue("crash", q).stream: ">"}, count=10_000):
            pass  # delivered to a consumer that never acknowledges
    async with running(app):
        await wait_until(lambda: len(handled) >= 20_000, 60, "every pending entry handled")
        await anyio.sleep(0.3)
        stats = app.running_consumers[0].stats
    assert sorted(handled) == list(range(20_000)), "each exactly once"
    assert stats.reclaimed == 20_000
    pending = sum(int(r.xpending(keys.queue("crash", q).stream, "g")["pending"]) for q in range(4))
    assert pending == 0
