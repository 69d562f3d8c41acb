"""Delayed messages: scheduling, promotion, wake-ups, cancellation, against a real Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import pytest
import redis

import rmq
from rmq.consumer.scheduler import Scheduler
from rmq.keys import NamespaceKeys
from rmq.scripts import Scripts
from tests.helpers import running, wait_until


async def test_delayed_message_is_never_early(app: rmq.App) -> None:
    got: list[tuple[rmq.Message, float]] = []

    @app.consumer("later", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append((msg, time.time()))

    async with running(app):
        sent_at = time.time()
        result = await app.send("later", {"n": 1}, delay=0.4)
        assert result.offset == ""
        assert result.deliver_at is not None
        assert abs(result.deliver_at.timestamp() - (sent_at + 0.4)) < 0.2
        await wait_until(lambda: len(got) == 1, timeout=5)
    msg, seen_at = got[0]
    assert seen_at - sent_at >= 0.4
    assert seen_at - sent_at < 2.0
    assert msg.msg_id == result.msg_id
    assert msg.born_at is not None and msg.stored_at is not None
    assert abs(msg.born_at.timestamp() - sent_at) < 0.1, "born when sent"
    assert msg.stored_at.timestamp() >= sent_at + 0.39, "stored when it became visible"
    assert msg.body == {"n": 1}


async def test_deliver_at_and_delay_level(app: rmq.App) -> None:
    got: list[tuple[str, float]] = []

    @app.consumer("timed", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append((msg.body, time.time()))

    async with running(app):
        start = time.time()
        await app.send("timed", "at", deliver_at=datetime.now(UTC) + timedelta(seconds=0.3))
        await app.send("timed", "level-1", delay_level=1)
        await app.send("timed", "timedelta", delay=timedelta(milliseconds=200))
        await wait_until(lambda: len(got) == 3, timeout=5)
    when = {body: at - start for body, at in got}
    assert when["timedelta"] >= 0.2
    assert when["at"] >= 0.29
    assert when["level-1"] >= 1.0
    assert [b for b, _ in got] == ["timedelta", "at", "level-1"]


async def test_a_time_in_the_past_delivers_at_once(app: rmq.App) -> None:
    async with app:
        result = await app.send("past", "x", deliver_at=datetime(2001, 1, 1, tzinfo=UTC))
        assert result.offset and result.deliver_at is None
        async with app.pull_consumer("past", "reader", start="first") as pc:
            (msg,) = await pc.receive()
        assert msg.offset == result.offset


async def test_delay_validation(opened: rmq.App, r: redis.Redis, namespace: str) -> None:
    with pytest.raises(rmq.ConfigError, match="max_delay"):
        await opened.send("v", "x", delay=timedelta(days=8))
    with pytest.raises(rmq.ConfigError, match="max_delay"):
        await opened.send("v", "x", deliver_at=datetime.now(UTC) + timedelta(days=30))
    with pytest.raises(rmq.ConfigError, match="at most one"):
        await opened.send("v", "x", delay=1, delay_level=2)
    with pytest.raises(rmq.ConfigError, match=r"1\.\.18"):
        await opened.send("v", "x", delay_level=19)
    with pytest.raises(rmq.ConfigError, match="seconds"):
        await opened.send("v", "x", delay=-1)
    assert not r.keys(f"{namespace}:*delay*")


async def test_cancel_delayed(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    got: list[str] = []

    @app.consumer("recall", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with running(app):
        cancelled = await app.send("recall", "cancelled", delay=0.5)
        kept = await app.send("recall", "kept", delay=0.3)
        assert await app.cancel_delayed("recall", cancelled.msg_id) is True
        assert await app.cancel_delayed("recall", cancelled.msg_id) is False
        await wait_until(lambda: got == ["kept"], timeout=5)
        assert await app.cancel_delayed("recall", kept.msg_id) is False, "already delivered"
        await anyio.sleep(0.5)
    assert got == ["kept"]
    assert await_nothing_scheduled(r, namespace, "recall")


def await_nothing_scheduled(r: redis.Redis, namespace: str, topic: str) -> bool:
    keys = NamespaceKeys(namespace)
    return all(
        r.zcard(keys.queue(topic, q).delay) == 0 and r.hlen(keys.queue(topic, q).delay_payload) == 0
        for q in range(4)
    )


async def test_a_nearer_message_wakes_the_promoter(settings: rmq.Settings) -> None:
    app = rmq.App(settings.replace(promote_max_sleep=30.0))
    got: list[tuple[str, float]] = []

    @app.consumer("wake", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append((msg.body, time.time()))

    async with running(app):
        await app.send("wake", "far", delay=60)
        await anyio.sleep(0.2)  # the promoter now sleeps until the far message is due
        start = time.time()
        await app.send("wake", "near", delay=0.2)
        await wait_until(lambda: len(got) == 1, timeout=5)
    (body, at), *_ = got
    assert body == "near"
    assert 0.2 <= at - start < 1.5


async def test_delayed_messages_reach_every_group(settings: rmq.Settings) -> None:
    """Any worker serving the topic promotes: a pull-only group gets the message too."""
    worker = rmq.App(settings)
    got: list[str] = []

    @worker.consumer("shared", group="push")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with running(worker):
        async with worker.pull_consumer("shared", "pull") as pc:
            await worker.send("shared", "x", delay=0.2)
            msgs = await pc.receive(wait=5)
        await wait_until(lambda: got == ["x"])
    assert [m.body for m in msgs] == ["x"]


async def test_delayed_send_modes(app: rmq.App) -> None:
    got: list[str] = []

    @app.consumer("modes", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with running(app):
        future = app.send_async("modes", "async", delay=0.1)
        app.send_oneway("modes", "oneway", delay=0.1)
        assert (await future).deliver_at is not None
        await wait_until(lambda: sorted(got) == ["async", "oneway"], timeout=5)


@pytest.mark.slow
async def test_many_due_at_once_are_promoted_in_bounded_batches(
    server_factory: type, namespace: str
) -> None:
    # Log only calls slower than 0.5 ms (inner commands of scripts are logged too, and are fast).
    server = server_factory(
        extra_args=("--slowlog-log-slower-than", "500", "--slowlog-max-len", "100000")
    )
    server.start()
    settings = rmq.Settings(redis_url=server.url, namespace=namespace, default_queues=1)
    total, batch = 100_000, settings.promote_batch
    async with rmq.App(settings) as app:
        for start in range(0, total, 2000):
            async with anyio.create_task_group() as tg:
                for n in range(start, start + 2000):
                    tg.start_soon(partial(app.send, "flood", n, delay=3600))
        queue = NamespaceKeys(namespace).queue("flood", 0)
        client = redis.Redis(port=server.port)
        assert client.zcard(queue.delay) == total
        client.zunionstore(queue.delay, {queue.delay: 0})  # every score 0: all due right now
        client.slowlog_reset()
        scheduler = Scheduler(app.context, {"flood": []})
        await scheduler.load()
        wire = app.context.conn.wires()
        rounds = 0
        while await scheduler.promote_due(wire) == 0 or scheduler.promoted < total:
            rounds += 1
            assert rounds < 2 * total // batch, "promotion makes progress in bounded batches"
        await wire.close()
        assert client.xlen(queue.stream) == total
        assert client.zcard(queue.delay) == 0 and client.hlen(queue.delay_payload) == 0
    sha = Scripts()["promote"].sha.encode()
    slow = [int(e["duration"]) for e in client.slowlog_get(100_000) if sha in e["command"]]
    client.close()
    longest_ms = max(slow, default=500) / 1000
    print(f"\n{total} delayed messages due at once: {rounds + 1} promote rounds of <= {batch}, "
          f"longest call {longest_ms:.1f} ms")  # fmt: skip
    assert rounds + 1 >= total // batch
    assert longest_ms < 200
