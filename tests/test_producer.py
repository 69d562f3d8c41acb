"""Producer behaviour against a real Redis: every send mode, selector, limit and failure path."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import zlib

import anyio
import pytest
import redis

import rmq
from rmq.codec import FLAG_JSON, FLAG_ZLIB
from rmq.keys import NamespaceKeys
from tests.helpers import make_settings
from tests.proxy import FlakyProxy


def stream_entries(
    r: redis.Redis, ns: str, topic: str, q: int
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return r.xrange(NamespaceKeys(ns).queue(topic, q).stream)  # type: ignore[return-value]


async def test_send_stores_one_entry_with_fixed_fields(
    opened: rmq.App, r: redis.Redis, namespace: str
) -> None:
    result = await opened.send(
        "orders", {"id": 1}, tag="paid", keys=["order-1", "user-9"], properties={"region": "eu"}
    )
    assert result.status is rmq.SendStatus.SEND_OK
    assert result.topic == "orders"
    assert len(result.msg_id) == 32
    entries = stream_entries(r, namespace, "orders", result.queue_id)
    assert [e[0].decode() for e in entries] == [result.offset]
    fields = entries[0][1]
    assert list(fields) == [b"i", b"t", b"k", b"p", b"c", b"d"]
    assert fields[b"i"] == result.msg_id.encode()
    assert fields[b"t"] == b"paid"
    assert fields[b"k"] == b"order-1 user-9"
    assert fields[b"p"] == b'{"region":"eu"}'
    assert int(fields[b"c"]) == FLAG_JSON
    assert fields[b"d"] == b'{"id":1}'


async def test_topic_is_auto_created_with_default_queues(opened: rmq.App) -> None:
    await opened.send("fresh", b"x")
    info = await opened.context.topics.get("fresh")
    assert info is not None and info.queues == 4


async def test_round_robin_spreads_over_queues(opened: rmq.App) -> None:
    results = [await opened.send("rr", i) for i in range(8)]
    first = results[0].queue_id  # each producer starts at a random queue, as in RocketMQ
    assert [r.queue_id for r in results] == [(first + n) % 4 for n in range(8)]


async def test_sharding_key_picks_a_stable_queue(opened: rmq.App) -> None:
    for key in ("user-1", "user-2", "user-42", "ü-ñ"):
        results = [await opened.send("orders", i, sharding_key=key) for i in range(5)]
        expected = zlib.crc32(key.encode()) % 4
        assert {r.queue_id for r in results} == {expected}
        offsets = [r.offset for r in results]
        assert offsets == sorted(offsets, key=lambda o: tuple(map(int, o.split("-"))))


async def test_custom_selector(opened: rmq.App) -> None:
    seen: list[tuple[int, object]] = []

    def by_region(queues: int, msg: rmq.Message) -> int:
        seen.append((queues, msg.properties.get("region")))
        return 3 if msg.properties.get("region") == "eu" else 0

    r1 = await opened.send("sel", b"a", properties={"region": "eu"}, selector=by_region)
    r2 = await opened.send("sel", b"b", properties={"region": "us"}, selector=by_region)
    assert (r1.queue_id, r2.queue_id) == (3, 0)
    assert seen == [(4, "eu"), (4, "us")]
    with pytest.raises(rmq.ConfigError, match="selector returned 7"):
        await opened.send("sel", b"c", selector=lambda queues, msg: 7)


async def test_send_async_future_and_callback(opened: rmq.App) -> None:
    got: list[rmq.SendResult] = []
    future = opened.send_async("async", "hello", callback=got.append)
    result = await future
    assert result.status is rmq.SendStatus.SEND_OK
    await anyio.sleep(0)
    assert got == [result]


async def test_send_async_reports_errors_to_on_error(settings: rmq.Settings) -> None:
    errors: list[BaseException] = []
    async with rmq.App(settings.replace(strict_topics=True)) as app:
        future = app.send_async("missing", b"x", on_error=errors.append)
        with pytest.raises(rmq.TopicNotFound):
            await future
    assert len(errors) == 1 and isinstance(errors[0], rmq.TopicNotFound)


async def test_send_oneway_is_stored_after_flush(
    opened: rmq.App, r: redis.Redis, namespace: str
) -> None:
    for i in range(10):
        opened.send_oneway("logs", f"line {i}")
    await opened.flush()
    bodies = sorted(
        fields[b"d"].decode()
        for q in range(4)
        for _, fields in stream_entries(r, namespace, "logs", q)
    )
    assert bodies == sorted(f"line {i}" for i in range(10))


async def test_send_batch_goes_to_one_queue_with_consecutive_offsets(
    opened: rmq.App, r: redis.Redis, namespace: str
) -> None:
    messages = [rmq.Message({"n": i}, tag="t", keys=[f"k{i}"]) for i in range(50)] + ["plain body"]
    results = await opened.send_batch("batch", messages, sharding_key="one")
    assert len(results) == 51
    assert len({r.queue_id for r in results}) == 1
    assert len({r.msg_id for r in results}) == 51
    stream = NamespaceKeys(namespace).queue("batch", results[0].queue_id).stream
    between = r.xrange(stream, results[0].offset, results[-1].offset)
    assert [e[0].decode() for e in between] == [x.offset for x in results], "nothing interleaved"


async def test_send_batch_limits(opened: rmq.App) -> None:
    assert await opened.send_batch("batch", []) == []
    too_many = [b"x"] * (opened.settings.max_batch_messages + 1)
    with pytest.raises(rmq.ConfigError, match="max_batch_messages"):
        await opened.send_batch("batch", too_many)


async def test_concurrent_sends_are_coalesced(opened: rmq.App, r: redis.Redis) -> None:
    await opened.send("coalesce", b"warm-up")
    before = r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    results = await asyncio.gather(*(opened.send("coalesce", i) for i in range(400)))
    calls = r.info("commandstats")["cmdstat_evalsha"]["calls"] - before
    assert len({(x.queue_id, x.offset) for x in results}) == 400
    assert calls < 100, f"{calls} script calls for 400 concurrent sends: not coalesced"


async def test_compression_is_transparent(opened: rmq.App, r: redis.Redis, namespace: str) -> None:
    body = {"text": "abc" * 10_000}
    result = await opened.send("big", body)
    fields = stream_entries(r, namespace, "big", result.queue_id)[0][1]
    assert int(fields[b"c"]) == FLAG_JSON | FLAG_ZLIB
    assert len(fields[b"d"]) < 5_000
    async with opened.pull_consumer("big", "reader", start="first") as pc:
        (msg,) = await pc.receive(max_messages=4)
    assert msg.body == body


async def test_too_large_body_writes_nothing(
    opened: rmq.App, r: redis.Redis, namespace: str
) -> None:
    limit = opened.settings.max_body_bytes
    with pytest.raises(rmq.MessageTooLarge, match=str(limit)):
        await opened.send("huge", b"x" * (limit + 1))
    assert r.hget(f"{namespace}:topics", "huge") is None
    assert not r.keys(f"{namespace}:*huge*")
    await opened.send("huge", b"x" * limit)  # exactly the limit is fine


async def test_invalid_input_gets_clear_errors(opened: rmq.App) -> None:
    with pytest.raises(rmq.InvalidName, match="topic name"):
        await opened.send("bad topic!", b"x")
    with pytest.raises(rmq.InvalidName, match="127"):
        await opened.send("t" * 128, b"x")
    with pytest.raises(rmq.InvalidName, match="tag"):
        await opened.send("ok", b"x", tag="two words")
    with pytest.raises(rmq.InvalidName, match="key"):
        await opened.send("ok", b"x", keys=["has space"])
    with pytest.raises(rmq.InvalidName, match="property"):
        await opened.send("ok", b"x", properties={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(rmq.EncodeError, match="not bytes, str or JSON"):
        await opened.send("ok", object())
    with pytest.raises(rmq.ConfigError, match="sharding_key"):
        await opened.send("ok", b"x", sharding_key="")
    with pytest.raises(rmq.MessageTooLarge, match="properties"):
        await opened.send("ok", b"x", properties={"p": "v" * 40_000})


async def test_strict_topics(settings: rmq.Settings) -> None:
    async with rmq.App(settings.replace(strict_topics=True)) as app:
        with pytest.raises(rmq.TopicNotFound, match="rmq topic create"):
            await app.send("nope", b"x")
        await app.context.topics.create("nope", 2)
        results = [await app.send("nope", i) for i in range(4)]
        assert sorted(x.queue_id for x in results) == [0, 0, 1, 1]


async def test_unreachable_redis_is_a_clear_error_without_password(namespace: str) -> None:
    from rmq.embedded import free_port

    url = f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0"
    app = rmq.App(rmq.Settings(redis_url=url, namespace=namespace, startup_timeout=0.3))
    started = time.monotonic()
    with pytest.raises(rmq.BrokerUnavailable) as info:
        async with app:
            pass
    assert time.monotonic() - started < 5
    assert "s3cret-pw" not in str(info.value)
    assert "***" in str(info.value)
    assert "s3cret-pw" not in repr(app.settings)


async def test_closed_app_refuses_sends(app: rmq.App) -> None:
    with pytest.raises(rmq.ProducerClosed, match="async with app"):
        await app.send("x", b"y")
    async with app:
        await app.send("x", b"y")
    with pytest.raises(rmq.ProducerClosed):
        await app.send("x", b"y")


async def test_oneway_backpressure(settings: rmq.Settings) -> None:
    async with rmq.App(settings.replace(max_pending_sends=10)) as app:
        await app.send("bp", b"warm")  # topic cached
        for _ in range(10):
            app.send_oneway("bp", b"x")
        with pytest.raises(rmq.PublishError, match="max_pending_sends"):
            app.send_oneway("bp", b"x")
        await app.flush()
        app.send_oneway("bp", b"x")  # room again
        await app.flush()


async def test_awaited_sends_wait_for_room(settings: rmq.Settings) -> None:
    async with rmq.App(settings.replace(max_pending_sends=5)) as app:
        results = await asyncio.gather(*(app.send("bp2", i) for i in range(100)))
        assert len({(x.queue_id, x.offset) for x in results}) == 100


@pytest.mark.parametrize("failure", ["drop_request", "drop_reply"])
async def test_retry_after_lost_connection_never_duplicates(
    server_factory: type, failure: str, namespace: str
) -> None:
    server = server_factory()
    server.start()
    async with FlakyProxy(server.port) as proxy:
        settings = make_settings(proxy.url, namespace)
        async with rmq.App(settings) as app:
            await app.send("dedup", b"warm-up", sharding_key="k")
            getattr(proxy, failure)("EVALSHA")
            result = await app.send("dedup", b"important", sharding_key="k")
            assert proxy.fired == 1
    client = redis.Redis(port=server.port)
    entries = client.xrange(NamespaceKeys(namespace).queue("dedup", result.queue_id).stream)
    client.close()
    bodies = [fields[b"d"] for _, fields in entries]
    assert bodies == [b"warm-up", b"important"], "stored exactly once"
    assert entries[1][0].decode() == result.offset


async def test_retried_batch_is_not_duplicated(server_factory: type, namespace: str) -> None:
    server = server_factory()
    server.start()
    async with FlakyProxy(server.port) as proxy:
        async with rmq.App(make_settings(proxy.url, namespace)) as app:
            await app.send("dedup", b"warm-up")
            proxy.drop_reply("EVALSHA")
            results = await app.send_batch("dedup", [f"m{i}" for i in range(20)])
    client = redis.Redis(port=server.port)
    entries = client.xrange(NamespaceKeys(namespace).queue("dedup", results[0].queue_id).stream)
    client.close()
    assert [f[b"d"] for _, f in entries] == [f"m{i}".encode() for i in range(20)]
    assert [e[0].decode() for e in entries] == [x.offset for x in results]


async def test_send_times_out_when_redis_hangs(server_factory: type, namespace: str) -> None:
    server = server_factory()
    server.start()
    settings = make_settings(server.url, namespace, send_timeout=0.5, socket_timeout=5.0)
    async with rmq.App(settings) as app:
        await app.send("hang", b"warm-up")
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(rmq.BrokerUnavailable, match="may or may not be stored"):
                await app.send("hang", b"stuck")
            assert time.monotonic() - started < 2.0
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        await app.send("hang", b"after")


async def test_sends_resume_after_redis_restart(server_factory: type, namespace: str) -> None:
    server = server_factory(appendonly=True)
    server.start()
    settings = make_settings(
        server.url, namespace, send_timeout=10.0, dedup_window=10.0, send_retries=50
    )
    async with rmq.App(settings) as app:
        first = await app.send("restart", b"before")
        server.kill()

        async def restart_soon() -> None:
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(server.start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(restart_soon)
            second = await app.send("restart", b"during")
    client = redis.Redis(port=server.port)
    keys = NamespaceKeys(namespace)
    bodies = sorted(
        f[b"d"] for q in range(4) for _, f in client.xrange(keys.queue("restart", q).stream)
    )
    client.close()
    assert bodies == [b"before", b"during"]
    assert first.msg_id != second.msg_id


async def test_dedup_records_are_one_per_producer_and_queue(
    opened: rmq.App, r: redis.Redis, namespace: str
) -> None:
    await asyncio.gather(*(opened.send("bounded", i) for i in range(300)))
    other = opened.producer(group="other")
    await other.send_batch("bounded", list(range(50)), sharding_key="k")
    records = r.keys(f"{namespace}:*:dd:*")
    assert len(records) == 4 + 1, "one record per (producer session, queue), not per message"
    ttl = r.pttl(records[0])
    assert 0 < ttl <= opened.settings.dedup_window * 1000
