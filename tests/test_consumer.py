"""Push consumer behaviour against a real Redis: concurrency, start positions, redelivery,
crash recovery, bad entries, group loss and graceful stop."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from datetime import UTC, datetime

import anyio
import pytest
import redis

import rmq
from rmq.keys import NamespaceKeys
from tests.helpers import make_settings, running, wait_until


def pending_count(r: redis.Redis, stream: str, group: str) -> int:
    return int(r.xpending(stream, group)["pending"])


async def test_async_handlers_run_concurrently_up_to_the_limit(app: rmq.App) -> None:
    active = 0
    peak = 0
    done: list[int] = []

    @app.consumer("work", group="g", concurrency=5)
    async def handle(msg: rmq.Message) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.05)
        active -= 1
        done.append(msg.body)

    async with running(app):
        await app.send_batch("work", list(range(40)))
        await wait_until(lambda: len(done) == 40)
    assert peak == 5
    assert sorted(done) == list(range(40))


async def test_sync_handlers_run_in_worker_threads(app: rmq.App) -> None:
    threads: set[int] = set()
    lock = threading.Lock()
    active = 0
    peak = 0
    done: list[int] = []

    @app.consumer("work", group="g", concurrency=3)
    def handle(msg: rmq.Message) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        threads.add(threading.get_ident())
        time.sleep(0.03)
        with lock:
            active -= 1
            done.append(msg.body)

    async with running(app):
        await app.send_batch("work", list(range(30)))
        await wait_until(lambda: len(done) == 30)
    assert threading.get_ident() not in threads
    assert peak == 3


async def test_start_positions(app: rmq.App, settings: rmq.Settings) -> None:
    async with app:
        await app.send("pos", "old")
    await anyio.sleep(0.01)
    cutoff = datetime.now(UTC)
    await anyio.sleep(0.01)
    async with app:
        await app.send("pos", "newer")
    seen: dict[str, list[str]] = {"last": [], "first": [], "time": []}
    worker = rmq.App(settings)

    @worker.consumer("pos", group="from-last")
    async def last(msg: rmq.Message) -> None:
        seen["last"].append(msg.body)

    @worker.consumer("pos", group="from-first", start="first")
    async def first(msg: rmq.Message) -> None:
        seen["first"].append(msg.body)

    @worker.consumer("pos", group="from-time", start=cutoff)
    async def by_time(msg: rmq.Message) -> None:
        seen["time"].append(msg.body)

    async with running(worker):
        async with app:
            await app.send("pos", "latest")
        await wait_until(
            lambda: len(seen["first"]) == 3 and len(seen["last"]) == 1 and len(seen["time"]) == 2
        )
    assert seen["last"] == ["latest"]
    assert sorted(seen["first"]) == ["latest", "newer", "old"]
    assert sorted(seen["time"]) == ["latest", "newer"]


async def test_start_applies_only_to_a_new_group(app: rmq.App, settings: rmq.Settings) -> None:
    got: list[str] = []

    @app.consumer("again", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with running(app):
        await app.send("again", "one")
        await wait_until(lambda: got == ["one"])
    async with app:
        await app.send("again", "two")  # sent while no worker runs
    async with running(app):
        await wait_until(lambda: got == ["one", "two"])


async def test_failed_message_is_retried_after_its_backoff(
    app: rmq.App, r: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[tuple[int, float]] = []

    @app.consumer("flaky", group="g", retry=[0.3])
    async def handle(msg: rmq.Message) -> None:
        attempts.append((msg.reconsume_times, time.monotonic()))
        if len(attempts) == 1:
            raise ValueError("first try fails")

    async with running(app):
        result = await app.send("flaky", "x")
        await wait_until(lambda: len(attempts) == 2, timeout=15)
        queue = NamespaceKeys(namespace).queue("flaky", result.queue_id)
        await wait_until(lambda: pending_count(r, queue.stream, "g") == 0)
        await wait_until(lambda: pending_count(r, queue.retry_stream("g"), "g") == 0)
    assert [a for a, _ in attempts] == [0, 1]
    assert attempts[1][1] - attempts[0][1] >= 0.3
    assert "first try fails" in caplog.text


async def test_long_handler_is_not_stolen(settings: rmq.Settings) -> None:
    settings = settings.replace(visibility_timeout=0.6, claim_interval=0.1)
    a, b = rmq.App(settings), rmq.App(settings)
    calls: list[tuple[str, int]] = []

    @a.consumer("slow", group="g", concurrency=1)
    async def slow(msg: rmq.Message) -> None:
        calls.append(("a", msg.delivery_count))
        await anyio.sleep(2.0)

    @b.consumer("slow", group="g")
    async def other(msg: rmq.Message) -> None:
        calls.append(("b", msg.delivery_count))

    async with running(a):
        await a.send("slow", "job")
        await wait_until(lambda: calls == [("a", 1)])
        async with running(b):
            await anyio.sleep(2.2)
    assert calls == [("a", 1)]


async def test_crashed_consumers_entries_are_claimed(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    got: list[tuple[str, int]] = []

    @app.consumer("claim", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append((msg.body, msg.delivery_count))

    async with app:
        results = await app.send_batch("claim", [f"m{i}" for i in range(10)], sharding_key="k")
    stream = NamespaceKeys(namespace).queue("claim", results[0].queue_id).stream
    # A consumer that read the messages and died without acknowledging them.
    r.xreadgroup("g", "dead-consumer", {stream: ">"}, count=100)
    assert pending_count(r, stream, "g") == 10
    started = time.monotonic()
    async with running(app):
        await wait_until(lambda: len(got) == 10, timeout=15)
        await wait_until(lambda: pending_count(r, stream, "g") == 0)
        stats = app.running_consumers[0].stats
    assert time.monotonic() - started >= app.settings.visibility_timeout * 0.9
    assert sorted(b for b, _ in got) == sorted(f"m{i}" for i in range(10))
    assert {d for _, d in got} == {2}
    assert stats.reclaimed == 10


async def test_own_pending_entries_are_drained_first(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    app = rmq.App(settings.replace(visibility_timeout=60.0))
    got: list[str] = []

    @app.consumer("drain", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with app:
        results = await app.send_batch("drain", [f"m{i}" for i in range(5)], sharding_key="k")
    stream = NamespaceKeys(namespace).queue("drain", results[0].queue_id).stream
    r.xreadgroup("g", app.name, {stream: ">"}, count=100)  # our own name, as after a reconnect
    async with running(app):
        await wait_until(lambda: len(got) == 5, timeout=5)
    assert sorted(got) == [f"m{i}" for i in range(5)]
    assert pending_count(r, stream, "g") == 0


async def test_trimmed_pending_entries_are_acknowledged(
    settings: rmq.Settings, r: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = rmq.App(settings.replace(visibility_timeout=60.0))
    got: list[str] = []

    @app.consumer("trim", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with app:
        results = await app.send_batch("trim", [f"m{i}" for i in range(4)], sharding_key="k")
    stream = NamespaceKeys(namespace).queue("trim", results[0].queue_id).stream
    r.xreadgroup("g", app.name, {stream: ">"}, count=100)
    r.xdel(stream, results[0].offset, results[1].offset)
    with caplog.at_level(logging.WARNING, "rmq"):
        async with running(app):
            await wait_until(lambda: len(got) == 2)
            await wait_until(lambda: pending_count(r, stream, "g") == 0)
            stats = app.running_consumers[0].stats
    assert sorted(got) == ["m2", "m3"]
    assert stats.trimmed == 2
    assert "lost their payload" in caplog.text


async def test_undecodable_entries_are_dead_lettered_and_never_crash(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    got: list[object] = []

    @app.consumer("mixed", group="g", start="first")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    queue = NamespaceKeys(namespace).queue("mixed", 0)
    async with app:
        await app.context.topics.create("mixed", 1)
    r.xadd(queue.stream, {"foo": "bar"})  # no body field
    r.xadd(queue.stream, {"d": "x", "c": "99"})  # unknown flags
    r.xadd(queue.stream, {"d": zlib.compress(bytes(64 << 20), 9), "c": "8"})  # inflates past 4 MiB
    r.xadd(queue.stream, {"d": "x", "p": '{"amount": 5}'})  # a property that is not a string
    r.xadd(queue.stream, {"d": b"\x00raw from another client"})  # only a body: accepted
    async with app:
        await app.send("mixed", {"ok": True})
    async with running(app):
        await wait_until(lambda: len(got) == 2)
        await wait_until(lambda: r.xlen(queue.dlq("g")) == 4)
        await wait_until(lambda: pending_count(r, queue.stream, "g") == 0)
    assert got == [b"\x00raw from another client", {"ok": True}]
    dead = [fields for _, fields in r.xrange(queue.dlq("g"))]
    assert dead[0][b"reason"] == b"undecodable"
    assert dead[0][b"o:foo"] == b"bar"
    assert b"no body" in dead[0][b"error"]
    assert dead[1][b"o:c"] == b"99"
    assert b"inflates past" in dead[2][b"error"]
    assert b"not a string" in dead[3][b"error"]
    assert dead[1][b"topic"] == b"mixed" and dead[1][b"group"] == b"g"


async def test_deleted_group_is_declared_again(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    got: list[str] = []

    @app.consumer("lost", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    keys = NamespaceKeys(namespace)
    async with running(app):
        await app.send("lost", "before")
        await wait_until(lambda: got == ["before"])
        for q in range(4):
            r.delete(keys.queue("lost", q).stream)  # stream and group gone (FLUSHALL-like)
        await anyio.sleep(app.settings.block_seconds * 2)
        await wait_until(
            lambda: all(r.exists(keys.queue("lost", q).stream) for q in range(4)), timeout=10
        )
        await app.send("lost", "after")
        await wait_until(lambda: got == ["before", "after"], timeout=10)


async def test_prefetch_bounds_what_one_consumer_holds(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    release = anyio.Event()
    done: list[int] = []

    @app.consumer("pf", group="g", concurrency=2, prefetch=10, fetch_batch=5)
    async def handle(msg: rmq.Message) -> None:
        await release.wait()
        done.append(msg.body)

    async with running(app):
        await app.send_batch("pf", list(range(200)), sharding_key="k")
        await anyio.sleep(0.5)
        stream = (
            NamespaceKeys(namespace)
            .queue("pf", (await app.send("pf", -1, sharding_key="k")).queue_id)
            .stream
        )
        held = pending_count(r, stream, "g")
        assert 2 <= held <= 10 + 5
        release.set()
        await wait_until(lambda: len(done) == 201, timeout=15)


async def test_graceful_stop_finishes_running_and_releases_the_rest(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    settings = settings.replace(visibility_timeout=30.0, claim_interval=0.1)
    a = rmq.App(settings)
    started: list[str] = []
    finished: list[str] = []

    @a.consumer("stop", group="g", concurrency=2, prefetch=20)
    async def slow(msg: rmq.Message) -> None:
        started.append(msg.body)
        await anyio.sleep(0.3)
        finished.append(msg.body)

    async with running(a):
        await a.send_batch("stop", [f"m{i}" for i in range(20)], sharding_key="k")
        await wait_until(lambda: len(started) >= 2)
    # running() returned: stop() drained the handlers that had started
    assert sorted(started) == sorted(finished)
    assert len(finished) < 20
    b = rmq.App(settings)
    rest: list[str] = []

    @b.consumer("stop", group="g")
    async def fast(msg: rmq.Message) -> None:
        rest.append(msg.body)

    begun = time.monotonic()
    async with running(b):
        # released entries are claimable at once, not after the 30 s visibility timeout
        await wait_until(lambda: len(rest) + len(finished) == 20, timeout=10)
    assert time.monotonic() - begun < 10
    assert sorted(rest + finished) == sorted(f"m{i}" for i in range(20))


async def test_several_consumers_in_one_app(app: rmq.App) -> None:
    got: dict[str, list[object]] = {"a": [], "b": []}

    @app.consumer("topic-a", group="g")
    async def on_a(msg: rmq.Message) -> None:
        got["a"].append(msg.body)

    @app.consumer("topic-b", group="g")
    def on_b(msg: rmq.Message) -> None:
        got["b"].append(msg.body)

    async with running(app):
        await app.send("topic-a", 1)
        await app.send("topic-b", 2)
        await wait_until(lambda: got == {"a": [1], "b": [2]})


async def test_each_group_gets_every_message(settings: rmq.Settings) -> None:
    apps = [rmq.App(settings) for _ in range(2)]
    got: dict[str, list[int]] = {"billing": [], "audit": []}
    for app, group in zip(apps, got, strict=True):

        @app.consumer("fanout", group=group)
        async def handle(msg: rmq.Message, group: str = group) -> None:
            got[group].append(msg.body)

    async with running(apps[0]), running(apps[1]):
        await apps[0].send_batch("fanout", list(range(20)))
        await wait_until(lambda: len(got["billing"]) == 20 and len(got["audit"]) == 20)
    assert sorted(got["billing"]) == sorted(got["audit"]) == list(range(20))


def test_registration_errors(settings: rmq.Settings) -> None:
    app = rmq.App(settings)

    @app.consumer("t", group="g")
    async def one(msg: rmq.Message) -> None: ...

    with pytest.raises(rmq.ConsumerError, match="already has a consumer"):

        @app.consumer("t", group="g")
        async def two(msg: rmq.Message) -> None: ...

    with pytest.raises(rmq.InvalidName):
        app.consumer("bad topic", group="g")(one)
    with pytest.raises(rmq.ConfigError, match="concurrency"):
        app.consumer("t2", group="g", concurrency=0)(one)
    with pytest.raises(rmq.ConfigError, match="start"):
        app.consumer("t3", group="g", start="middle")(one)  # type: ignore[arg-type]


async def test_run_without_consumers_is_an_error(settings: rmq.Settings) -> None:
    with pytest.raises(rmq.ConsumerError, match="no consumers"):
        await rmq.App(settings).run(handle_signals=False)


async def test_worker_survives_redis_restart(server_factory: type, namespace: str) -> None:
    server = server_factory(appendonly=True)
    server.start()
    app = rmq.App(
        make_settings(server.url, namespace, send_timeout=10.0, dedup_window=10.0, send_retries=50)
    )
    got: list[str] = []

    @app.consumer("survive", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with running(app):
        await app.send("survive", "before")
        await wait_until(lambda: got == ["before"])
        server.kill()
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(server.start)
        await app.send("survive", "after")
        await wait_until(lambda: got == ["before", "after"], timeout=15)
