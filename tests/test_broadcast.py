"""Broadcasting model against a real Redis: every instance gets every message, offsets persist
per instance id, failures are retried then recorded, stale instances can be removed."""

from __future__ import annotations

from typing import Any

import anyio
import redis

import rmq
from rmq.consumer.broadcast import broadcast_instances, remove_broadcast_instance
from rmq.keys import NamespaceKeys
from tests.helpers import running, wait_until


def make(settings: rmq.Settings, got: list[Any], **options: object) -> rmq.App:
    app = rmq.App(settings.replace(lease_ttl=1.5))

    @app.consumer("config", group="cache", model="broadcasting", **options)  # type: ignore[arg-type]
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    return app


async def test_every_instance_gets_every_message(settings: rmq.Settings) -> None:
    got: list[list[Any]] = [[], [], []]
    apps = [make(settings, got[i]) for i in range(3)]
    async with running(apps[0]), running(apps[1]), running(apps[2]):
        ids = {a.running_consumers[0].instance_id for a in apps}
        assert len(ids) == 3, "each process claimed its own slot"
        results = await apps[0].send_batch("config", list(range(20)))
        await apps[0].send_batch("config", list(range(20, 40)), sharding_key="other")
        await wait_until(lambda: all(len(g) == 40 for g in got), timeout=10)
    assert all(sorted(g) == list(range(40)) for g in got)
    assert results


async def test_a_restarted_instance_resumes_from_its_offset(settings: rmq.Settings) -> None:
    first: list[Any] = []
    app = make(settings, first)
    async with running(app):
        instance = app.running_consumers[0].instance_id
        await app.send_batch("config", ["a", "b"])
        await wait_until(lambda: len(first) == 2)
    async with app:
        await app.send_batch("config", ["c", "d"])  # sent while the instance is down
    again: list[Any] = []
    restarted = make(settings, again)
    async with running(restarted):
        assert restarted.running_consumers[0].instance_id == instance
        await wait_until(lambda: sorted(again) == ["c", "d"])
        await anyio.sleep(0.2)
    assert sorted(again) == ["c", "d"], "nothing lost, nothing replayed"


async def test_explicit_instance_id_and_start_first(settings: rmq.Settings) -> None:
    setup = rmq.App(settings)
    async with setup:
        await setup.send_batch("config", ["old"])
    got: list[Any] = []
    app = make(settings, got, instance_id="pod-7", start="first")
    async with running(app):
        assert app.running_consumers[0].instance_id == "pod-7"
        await wait_until(lambda: got == ["old"])


async def test_failures_are_retried_then_recorded(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    app = rmq.App(settings)
    attempts: list[int] = []

    @app.consumer("flaky", group="b", model="broadcasting", suspend=0.01, broadcast_retries=2)
    async def handle(msg: rmq.Message) -> None:
        attempts.append(msg.reconsume_times)
        raise ValueError("no")

    async with running(app):
        result = await app.send("flaky", "x")
        queue = NamespaceKeys(namespace).queue("flaky", result.queue_id)
        await wait_until(lambda: r.xlen(queue.dlq("b")) == 1)
    assert attempts == [0, 1, 2]
    (dead,) = [f for _, f in r.xrange(queue.dlq("b"))]
    assert dead[b"reason"] == b"max_retries" and dead[b"o:d"] == b"x"
    assert dead[b"instance"]


async def test_stale_instances_can_be_listed_and_removed(settings: rmq.Settings) -> None:
    got: list[Any] = []
    app = make(settings, got, instance_id="gone-pod")
    async with running(app):
        await app.send("config", 1)
        await wait_until(lambda: got == [1])
    async with app:
        instances = await broadcast_instances(app.context, "config", "cache")
        assert set(instances) == {"gone-pod"}
        assert len(instances["gone-pod"]["offsets"]) == 4
        assert await remove_broadcast_instance(app.context, "config", "cache", "gone-pod") == 4
        assert await broadcast_instances(app.context, "config", "cache") == {}
