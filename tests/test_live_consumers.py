"""Live consumers: heartbeat-backed, drained ones leave no consumer behind, dead ones show as dead.

`rmq group consumers`, `Admin.groups/group_progress` and the `rmq_consumers` gauge count only the
consumers whose app beats in `<ns>:consumers` (rmq.health.Liveness).
"""

from __future__ import annotations

import anyio
import redis
from prometheus_client.parser import text_string_to_metric_families

import rmq
from rmq.keys import NamespaceKeys
from rmq.metrics_export import render
from rmq.metrics_state import StateCollector
from tests.helpers import make_settings, running, wait_until

TOPIC, GROUP = "orders", "billing"


async def gauge(app: rmq.App, name: str, **labels: str) -> float | None:
    text = await render(StateCollector(app.context, min_interval=0), in_process=False)
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def consumer_names(r: redis.Redis, namespace: str, queues: int = 2) -> set[str]:
    keys = NamespaceKeys(namespace)
    names: set[str] = set()
    for q in range(queues):
        for row in r.xinfo_consumers(keys.queue(TOPIC, q).stream, GROUP):
            names.add(row["name"].decode())
    return names


async def test_a_running_worker_is_live_and_a_drained_one_leaves_nothing(
    redis_url: str, namespace: str, r: redis.Redis
) -> None:
    settings = make_settings(redis_url, namespace, heartbeat_interval=0.2)
    worker = rmq.App(settings)
    handled: list[int] = []

    @worker.consumer(TOPIC, group=GROUP, start="first")
    async def handle(msg: rmq.Message) -> None:
        handled.append(msg.body)

    async with rmq.App(settings) as admin_app:
        await admin_app.admin.create_topic(TOPIC, queues=2)
        async with running(worker):
            for n in range(4):
                await admin_app.send(TOPIC, n, selector=lambda _q, m: int(m.body) % 2)
            await wait_until(lambda: len(handled) == 4, what="every message handled")
            await wait_until(lambda: consumer_names(r, namespace) == {worker.name}, what="reads")
            (consumer,) = await admin_app.admin.group_consumers(TOPIC, GROUP)
            assert (consumer.name, consumer.state, consumer.pending) == (worker.name, "live", 0)
            (summary,) = await admin_app.admin.groups(TOPIC)
            assert summary.consumers == 1
            progress = await admin_app.admin.group_progress(TOPIC, GROUP)
            assert [q.consumers for q in progress.queues] == [1, 1]
            assert [q.dead_consumers for q in progress.queues] == [0, 0]
            assert await gauge(admin_app, "rmq_consumers", topic=TOPIC, group=GROUP) == 1
        # drained: its empty consumer is gone from every stream, and it no longer beats
        assert consumer_names(r, namespace) == set()
        assert r.zcard(NamespaceKeys(namespace).live_consumers) == 0
        assert await admin_app.admin.group_consumers(TOPIC, GROUP) == []
        assert (await admin_app.admin.groups(TOPIC))[0].consumers == 0
        assert await gauge(admin_app, "rmq_consumers", topic=TOPIC, group=GROUP) == 0


async def test_a_consumer_whose_app_stopped_beating_is_dead(
    redis_url: str, namespace: str, r: redis.Redis
) -> None:
    settings = make_settings(redis_url, namespace, heartbeat_interval=0.2)
    async with rmq.App(settings) as app:
        await app.admin.create_topic(TOPIC, queues=2)
        stream = NamespaceKeys(namespace).queue(TOPIC, 0).stream
        r.xgroup_create(stream, GROUP, "0", mkstream=True)
        await app.send(TOPIC, "x", selector=lambda _q, _m: 0)
        # a worker that crashed holding an entry: Redis lists it, nothing beats for it
        r.xreadgroup(GROUP, "host-4242-abcdef", {stream: ">"}, count=1)
        # one that beat long ago (three intervals without a beat: dead)
        r.xgroup_createconsumer(stream, GROUP, "host-4343-fedcba")
        key = NamespaceKeys(namespace).live_consumers
        r.zadd(key, {"host-4343-fedcba": 1})
        rows = {c.name: c for c in await app.admin.group_consumers(TOPIC, GROUP)}
        assert {n: (c.state, c.pending) for n, c in rows.items()} == {
            "host-4242-abcdef": ("dead", 1),
            "host-4343-fedcba": ("dead", 0),
        }
        progress = await app.admin.group_progress(TOPIC, GROUP)
        assert (progress.queues[0].consumers, progress.queues[0].dead_consumers) == (0, 2)
        assert await gauge(app, "rmq_consumers", topic=TOPIC, group=GROUP) == 0

        # the same names are live while their app beats
        async with app.pull_consumer(TOPIC, GROUP) as pc:
            await app.send(TOPIC, "y", selector=lambda _q, _m: 1)
            (got,) = await pc.receive(max_messages=1, wait=1)
            await pc.ack(got)
            states = {c.name: c.state for c in await app.admin.group_consumers(TOPIC, GROUP)}
            assert states[pc.name] == "live"  # `<app name>-p1`: its app beats
            assert await gauge(app, "rmq_consumers", topic=TOPIC, group=GROUP) == 1
            await anyio.sleep(0.5)  # beats go on
            states = {c.name: c.state for c in await app.admin.group_consumers(TOPIC, GROUP)}
            assert states[pc.name] == "live"
        # left empty: deleted; the dead ones stay listed as dead
        names = {c.name for c in await app.admin.group_consumers(TOPIC, GROUP)}
        assert names == {"host-4242-abcdef", "host-4343-fedcba"}
