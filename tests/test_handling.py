"""One place decides handler outcomes (`rmq.consumer.handling`): the three push runtimes treat
`Reject`, `Retry(delay=...)`, `Skip`, a timeout, `sys.exit()` and a plain exception the same way,
against a real Redis. Where the README says they differ (how a retry happens, which limit
applies), the difference is tested too."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis

import rmq
from rmq.keys import NamespaceKeys
from tests.helpers import make_settings, running, wait_until

MODES = ["concurrently", "orderly", "broadcasting"]
Handler = Callable[[rmq.Message], Any]


def options(mode: str, delay: float = 0.05, retries: int = 2) -> dict[str, Any]:
    """The same retry budget and delay, spelled the way each mode takes them."""
    if mode == "broadcasting":
        return {"model": "broadcasting", "suspend": delay, "broadcast_retries": retries}
    if mode == "orderly":
        return {"mode": "orderly", "suspend": delay, "max_retries": retries}
    return {"retry": [delay], "max_retries": retries}


def dead_letters(r: redis.Redis, namespace: str, topic: str) -> list[dict[bytes, bytes]]:
    stream = NamespaceKeys(namespace).queue(topic, 0).dlq("g")
    return [fields for _, fields in r.xrange(stream)]  # type: ignore[misc]


async def consume(
    redis_url: str, namespace: str, how: str, handler: Handler, *, until: Callable[[], bool],
    after: float = 0.3, **extra: Any,
) -> rmq.App:  # fmt: skip
    """Run one consumer of topic "t" in mode `how`, send one message, wait for `until()`, then a
    little longer (to see that nothing more happens), and stop."""
    app = rmq.App(make_settings(redis_url, namespace, default_queues=1))
    app.consumer("t", group="g", **{**options(how), **extra})(handler)
    async with running(app):
        await app.send("t", "x")
        await wait_until(until, timeout=15, what="the outcome")
        await anyio.sleep(after)
    return app


@pytest.mark.parametrize("mode", MODES)
async def test_a_plain_exception_is_retried_then_dead_lettered(
    redis_url: str, namespace: str, r: redis.Redis, mode: str
) -> None:
    calls: list[int] = []

    async def handler(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        raise ValueError("boom")

    app = await consume(redis_url, namespace, mode, handler,
                        until=lambda: bool(dead_letters(r, namespace, "t")))  # fmt: skip
    assert calls == [0, 1, 2]
    (dead,) = dead_letters(r, namespace, "t")
    assert dead[b"reason"] == b"max_retries" and dead[b"attempts"] == b"3"
    assert dead[b"error"] == b"ValueError: boom"
    stats = app.running_consumers[0].stats
    assert (stats.failed, stats.retried, stats.dead_lettered) == (3, 2, 1)


@pytest.mark.parametrize("mode", MODES)
async def test_retry_with_a_delay_uses_that_delay(
    redis_url: str, namespace: str, r: redis.Redis, mode: str
) -> None:
    """The mode's own delay is 60 s here: only `Retry(delay=0.05)` makes the retries come back
    within the test (broadcasting used to ignore it)."""
    calls: list[int] = []

    async def handler(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        raise rmq.Retry(delay=0.05)

    await consume(redis_url, namespace, mode, handler, **options(mode, delay=60),
                  until=lambda: bool(dead_letters(r, namespace, "t")))  # fmt: skip
    assert calls == [0, 1, 2]
    (dead,) = dead_letters(r, namespace, "t")
    assert dead[b"reason"] == b"max_retries" and dead[b"attempts"] == b"3"


@pytest.mark.parametrize("mode", MODES)
async def test_reject_dead_letters_at_once(
    redis_url: str, namespace: str, r: redis.Redis, mode: str
) -> None:
    """Broadcasting used to retry a Reject `broadcast_retries` times and record max_retries."""
    calls: list[int] = []

    async def handler(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        raise rmq.Reject("invalid order")

    app = await consume(redis_url, namespace, mode, handler,
                        until=lambda: bool(dead_letters(r, namespace, "t")))  # fmt: skip
    assert calls == [0]
    (dead,) = dead_letters(r, namespace, "t")
    assert (dead[b"reason"], dead[b"error"], dead[b"attempts"]) == (
        b"rejected", b"invalid order", b"1",
    )  # fmt: skip
    stats = app.running_consumers[0].stats
    assert (stats.failed, stats.retried, stats.dead_lettered) == (1, 0, 1)


@pytest.mark.parametrize("mode", MODES)
async def test_skip_acknowledges_without_a_retry(
    redis_url: str, namespace: str, r: redis.Redis, mode: str
) -> None:
    calls: list[int] = []

    async def handler(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        raise rmq.Skip

    app = await consume(redis_url, namespace, mode, handler, until=lambda: calls == [0])
    assert calls == [0]
    assert dead_letters(r, namespace, "t") == []
    stats = app.running_consumers[0].stats
    assert (stats.skipped, stats.failed, stats.retried) == (1, 0, 0)
    if mode != "broadcasting":  # acknowledged: nothing pending (broadcasting has no group)
        stream = NamespaceKeys(namespace).queue("t", 0).stream
        assert r.xpending(stream, "g")["pending"] == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_timeout_is_a_failure(
    redis_url: str, namespace: str, r: redis.Redis, mode: str, kind: str
) -> None:
    calls: list[int] = []

    async def slow(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        await anyio.sleep(5)

    def slow_sync(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        time.sleep(1)

    handler = slow if kind == "async" else slow_sync
    await consume(redis_url, namespace, mode, handler, timeout=0.1, **options(mode, retries=1),
                  until=lambda: bool(dead_letters(r, namespace, "t")))  # fmt: skip
    assert calls == [0, 1]
    (dead,) = dead_letters(r, namespace, "t")
    assert dead[b"reason"] == b"max_retries"
    assert b"timeout of 0.1s" in dead[b"error"]


@pytest.mark.parametrize("mode", MODES)
async def test_sys_exit_in_a_handler_is_a_failure(
    redis_url: str, namespace: str, r: redis.Redis, mode: str
) -> None:
    """It must not stop the worker as if it had drained."""
    calls: list[int] = []

    def handler(msg: rmq.Message) -> None:
        calls.append(msg.reconsume_times)
        sys.exit(0)

    await consume(redis_url, namespace, mode, handler, **options(mode, retries=0),
                  until=lambda: bool(dead_letters(r, namespace, "t")))  # fmt: skip
    (dead,) = dead_letters(r, namespace, "t")
    assert b"sys.exit(0)" in dead[b"error"]
    assert calls == [0]


@pytest.mark.parametrize("mode", MODES)
async def test_how_a_retry_happens(
    redis_url: str, namespace: str, r: redis.Redis, mode: str
) -> None:
    """The documented difference: concurrently, a retry is a copy in the group's retry stream
    (a new offset, the first delivery's offset kept as its origin); orderly and broadcasting
    retry the same entry in place. Broadcasting counts `broadcast_retries`, not `max_retries`."""
    seen: list[str] = []

    async def handler(msg: rmq.Message) -> None:
        seen.append(msg.offset)
        raise ValueError("boom")

    extra = options(mode, retries=1)
    if mode == "broadcasting":
        extra["max_retries"] = 5  # not the broadcasting limit
    await consume(redis_url, namespace, mode, handler, **extra,
                  until=lambda: bool(dead_letters(r, namespace, "t")))  # fmt: skip
    assert len(seen) == 2
    (dead,) = dead_letters(r, namespace, "t")
    assert dead[b"offset"].decode() == seen[0]
    if mode == "concurrently":
        assert seen[1] != seen[0]
    else:
        assert seen[1] == seen[0]


async def test_sync_handlers_past_their_timeout_keep_their_thread(
    redis_url: str, namespace: str
) -> None:
    """A sync handler cannot be interrupted; its message is retried, but the thread it runs in
    keeps its place, so `concurrency` bounds the threads (it used to pile up 16 with 2)."""
    lock = threading.Lock()
    running_now = [0]
    peak = [0]
    calls = [0]

    def slow(msg: rmq.Message) -> None:
        with lock:
            running_now[0] += 1
            calls[0] += 1
            peak[0] = max(peak[0], running_now[0])
        time.sleep(0.5)
        with lock:
            running_now[0] -= 1

    app = rmq.App(make_settings(redis_url, namespace, default_queues=1))
    app.consumer("t", group="g", concurrency=2, timeout=0.05, retry=[0.01], max_retries=3)(slow)
    async with running(app):
        for n in range(4):
            await app.send("t", n)
        await wait_until(lambda: calls[0] >= 8, timeout=20, what="retries of timed-out handlers")
    assert peak[0] <= 2, f"{peak[0]} sync handlers ran at once with concurrency=2"
