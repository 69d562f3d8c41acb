"""Retries with backoff, handler signals, timeouts and poison messages, against a real Redis."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
import redis

import rmq
from rmq.keys import NamespaceKeys
from rmq.retry import DEFAULT_RETRY_SCHEDULE, Exponential, Fixed, Schedule, retry_policy
from tests.helpers import running, wait_until


def dlq_entries(r: redis.Redis, namespace: str, topic: str, group: str) -> list[dict[bytes, bytes]]:
    keys = NamespaceKeys(namespace)
    out: list[dict[bytes, bytes]] = []
    for q in range(4):
        out += [fields for _, fields in r.xrange(keys.queue(topic, q).dlq(group))]  # type: ignore[misc]
    return out


def test_policies() -> None:
    assert retry_policy(None).delay(1) == 10
    assert retry_policy(None).delay(16) == 7200
    assert retry_policy(None).delay(40) == 7200
    assert DEFAULT_RETRY_SCHEDULE[:4] == (10, 30, 60, 120)
    assert Schedule([1, 2]).delay(1) == 1 and Schedule([1, 2]).delay(5) == 2
    assert Fixed(3).delay(9) == 3
    exp = Exponential(initial=1, factor=2, max=5)
    assert [exp.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    jittered = Exponential(initial=10, factor=1, max=10, jitter=0.5)
    assert all(5 <= jittered.delay(1) <= 15 for _ in range(100))
    assert isinstance(retry_policy(0.5), Fixed)
    assert isinstance(retry_policy([1, 2]), Schedule)
    with pytest.raises(rmq.ConfigError):
        retry_policy("soon")  # type: ignore[arg-type]
    with pytest.raises(rmq.ConfigError):
        Schedule([])
    with pytest.raises(rmq.ConfigError):
        Exponential(initial=0)


async def test_retry_schedule_attempts_and_dead_letter(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    seen: list[tuple[int, str, float]] = []

    @app.consumer("pay", group="g", retry=[0.2, 0.4], max_retries=2)
    async def always_fails(msg: rmq.Message) -> None:
        seen.append((msg.reconsume_times, msg.msg_id, time.monotonic()))
        raise RuntimeError(f"boom {len(seen)}")

    async with running(app):
        sent = await app.send("pay", {"n": 1}, keys=["order-1"])
        await wait_until(lambda: len(dlq_entries(r, namespace, "pay", "g")) == 1, timeout=15)
    assert [s[0] for s in seen] == [0, 1, 2]
    assert {s[1] for s in seen} == {sent.msg_id}
    assert seen[1][2] - seen[0][2] >= 0.2
    assert seen[2][2] - seen[1][2] >= 0.4
    (dead,) = dlq_entries(r, namespace, "pay", "g")
    assert dead[b"reason"] == b"max_retries"
    assert dead[b"error"] == b"RuntimeError: boom 3"
    assert dead[b"attempts"] == b"3"
    assert dead[b"topic"] == b"pay" and dead[b"group"] == b"g"
    assert dead[b"queue"] == str(sent.queue_id).encode()
    assert dead[b"offset"] == sent.offset.encode(), "origin: the first delivery's entry id"
    assert int(dead[b"first_failure_ms"]) <= int(dead[b"last_failure_ms"])
    assert dead[b"o:i"] == sent.msg_id.encode()
    assert dead[b"o:k"] == b"order-1"


async def test_only_the_failing_group_sees_retries(settings: rmq.Settings) -> None:
    a, b = rmq.App(settings), rmq.App(settings)
    got: dict[str, list[int]] = {"a": [], "b": []}

    @a.consumer("fan", group="fails-once", retry=[0.1])
    async def fails_once(msg: rmq.Message) -> None:
        got["a"].append(msg.reconsume_times)
        if msg.reconsume_times == 0:
            raise ValueError("once")

    @b.consumer("fan", group="fine")
    async def fine(msg: rmq.Message) -> None:
        got["b"].append(msg.reconsume_times)

    async with running(a), running(b):
        await a.send("fan", "x")
        await wait_until(lambda: got["a"] == [0, 1] and got["b"] == [0])
        await anyio.sleep(0.3)
    assert got == {"a": [0, 1], "b": [0]}


async def test_retry_signal_picks_the_delay(app: rmq.App) -> None:
    seen: list[float] = []

    @app.consumer("later", group="g")  # default policy would wait 10 s
    async def handle(msg: rmq.Message) -> None:
        seen.append(time.monotonic())
        if len(seen) == 1:
            raise rmq.Retry(delay=0.3)

    async with running(app):
        await app.send("later", "x")
        await wait_until(lambda: len(seen) == 2, timeout=5)
    assert 0.3 <= seen[1] - seen[0] < 3


async def test_handler_timeout_cancels_and_retries(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    calls: list[int] = []
    cancelled: list[bool] = []

    @app.consumer("slow", group="g", timeout=0.2, retry=[0.05], max_retries=1)
    async def handle(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        if msg.reconsume_times == 0:
            try:
                await anyio.sleep(10)
            except BaseException:
                cancelled.append(True)
                raise

    async with running(app):
        await app.send("slow", "x")
        await wait_until(lambda: calls == [0, 1], timeout=5)
    assert cancelled == [True]


async def test_sync_handler_timeout_gives_up_on_the_thread(app: rmq.App) -> None:
    calls: list[int] = []
    release = threading.Event()

    @app.consumer("slow-sync", group="g", timeout=0.2, retry=[0.05])
    def handle(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        if msg.reconsume_times == 0:
            release.wait(5)

    async with running(app):
        await app.send("slow-sync", "x")
        await wait_until(lambda: calls == [0, 1], timeout=5)
        release.set()


async def test_timeout_dead_letter_names_the_timeout(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    @app.consumer("stuck", group="g", timeout=0.1, max_retries=0)
    async def handle(msg: rmq.Message) -> None:
        await anyio.sleep(5)

    async with running(app):
        await app.send("stuck", "x")
        await wait_until(lambda: len(dlq_entries(r, namespace, "stuck", "g")) == 1, timeout=5)
    (dead,) = dlq_entries(r, namespace, "stuck", "g")
    assert b"timeout of 0.1s" in dead[b"error"]


async def test_reject_dead_letters_at_once(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    calls: list[int] = []

    @app.consumer("bad", group="g", retry=[0.05])
    async def handle(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        raise rmq.Reject("invalid order")

    async with running(app):
        await app.send("bad", "x")
        await wait_until(lambda: len(dlq_entries(r, namespace, "bad", "g")) == 1)
        await anyio.sleep(0.3)
    assert calls == [0]
    (dead,) = dlq_entries(r, namespace, "bad", "g")
    assert dead[b"reason"] == b"rejected"
    assert dead[b"error"] == b"invalid order"


async def test_skip_acknowledges(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    calls: list[int] = []

    @app.consumer("skip", group="g", retry=[0.05])
    async def handle(msg: rmq.Message) -> None:
        calls.append(1)
        raise rmq.Skip

    async with running(app):
        result = await app.send("skip", "x")
        stream = NamespaceKeys(namespace).queue("skip", result.queue_id).stream
        await wait_until(lambda: calls == [1] and r.xpending(stream, "g")["pending"] == 0)
        await anyio.sleep(0.3)
        stats = app.running_consumers[0].stats
    assert calls == [1]
    assert stats.skipped == 1 and stats.retried == 0
    assert dlq_entries(r, namespace, "skip", "g") == []


async def test_poison_message_is_dead_lettered_after_max_deliveries(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    app = rmq.App(settings.replace(visibility_timeout=0.3, claim_interval=0.1))
    calls: list[int] = []

    @app.consumer("poison", group="g", max_deliveries=3)
    async def handle(msg: rmq.Message) -> None:
        calls.append(msg.delivery_count)

    async with app:
        result = await app.send("poison", "kills workers")
    stream = NamespaceKeys(namespace).queue("poison", result.queue_id).stream
    # Three consumers received it and died (no ack): the delivery count is now 3.
    r.xreadgroup("g", "dead-1", {stream: ">"})
    for name in ("dead-2", "dead-3"):
        r.xclaim(stream, "g", name, 0, [result.offset])
    assert r.xpending_range(stream, "g", "-", "+", 1)[0]["times_delivered"] == 3
    async with running(app):
        await wait_until(lambda: len(dlq_entries(r, namespace, "poison", "g")) == 1, timeout=10)
    assert calls == []
    (dead,) = dlq_entries(r, namespace, "poison", "g")
    assert dead[b"reason"] == b"max_deliveries"
    assert dead[b"attempts"] == b"4"
    assert r.xpending(stream, "g")["pending"] == 0


async def test_failure_burst_settles_every_message(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    handled: list[str] = []

    @app.consumer("burst", group="g", retry=[0.05, 0.05], max_retries=2, concurrency=10)
    async def handle(msg: rmq.Message) -> None:
        n = msg.body
        if n % 3 == 0:
            raise ValueError("always")
        if n % 3 == 1 and msg.reconsume_times == 0:
            raise ValueError("once")
        handled.append(msg.msg_id)

    async with running(app):
        results = await app.send_batch("burst", list(range(300)))
        await wait_until(
            lambda: len(handled) + len(dlq_entries(r, namespace, "burst", "g")) == 300, timeout=20
        )
        stats = app.running_consumers[0].stats
    dead = dlq_entries(r, namespace, "burst", "g")
    assert len(dead) == 100
    assert {d[b"o:i"].decode() for d in dead} | set(handled) == {x.msg_id for x in results}
    assert len(set(handled)) == len(handled) == 200
    assert stats.retried == 100 * 2 + 100


async def test_retry_copy_keeps_message_identity(app: rmq.App) -> None:
    seen: list[rmq.Message] = []

    @app.consumer("ident", group="g", retry=[0.05])
    async def handle(msg: rmq.Message) -> None:
        seen.append(msg)
        if len(seen) == 1:
            raise ValueError("again")

    async with running(app):
        sent = await app.send("ident", {"x": 1}, tag="t1", keys=["k1"], properties={"p": "v"})
        await wait_until(lambda: len(seen) == 2)
    first, retried = seen
    assert retried.msg_id == first.msg_id == sent.msg_id
    assert (retried.body, retried.tag, retried.keys, retried.properties) == (
        {"x": 1}, "t1", ["k1"], {"p": "v"},
    )  # fmt: skip
    assert retried.born_at == first.born_at
    assert retried.queue_id == first.queue_id
    assert retried.reconsume_times == 1 and first.reconsume_times == 0
    assert retried.stored_at is not None and first.stored_at is not None
    assert retried.stored_at > first.stored_at
