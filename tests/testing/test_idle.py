"""rmq.testing: run_until_idle for every consumer kind, what counts as work, timeouts; the helpers.

Uses the plugin as a project would (`pytest_plugins`), on the server its `rmq_server` starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import anyio
import pytest
import redis

import rmq
import rmq.testing
from rmq.embedded import EmbeddedCluster
from rmq.testing import backlog, bind, delete_namespace, run_until_idle, settings
from tests.conftest import server_binary

pytest_plugins = ["rmq.testing"]


async def test_chained_consumers_of_every_kind(rmq_app: rmq.App) -> None:
    """Orders are billed (retrying some), receipts sent one-way are mailed in order, and mailing
    schedules a delayed audit that every audit instance gets: idle only once all of it is done."""
    app = rmq_app
    billed: list[int] = []
    mailed: list[int] = []
    audited: list[int] = []

    @app.consumer("orders", group="billing", retry=0.02)
    async def bill(msg: rmq.Message) -> None:
        if msg.body % 7 == 3 and msg.reconsume_times == 0:
            raise RuntimeError("try again")
        billed.append(msg.body)
        app.send_oneway("receipts", msg.body, sharding_key="one-queue")

    @app.consumer("receipts", group="mailer", mode="orderly")
    async def mail(msg: rmq.Message) -> None:
        mailed.append(msg.body)
        await app.send("audit", msg.body, delay=0.05)

    @app.consumer("audit", group="auditors", model="broadcasting", instance_id="auditor-1")
    def audit(msg: rmq.Message) -> None:
        audited.append(msg.body)

    async with app:
        for n in range(60):
            await app.send("orders", n)

    stats = await run_until_idle(app)

    assert sorted(billed) == list(range(60))
    assert mailed == billed  # one queue, orderly: mailed in the order billed
    assert sorted(audited) == list(range(60))
    assert stats["orders/billing"].retried == len([n for n in range(60) if n % 7 == 3])
    async with app:
        assert await backlog(app) == []


async def test_retries_and_delayed_messages_are_work_unless_scheduled_is_false(
    rmq_app: rmq.App,
) -> None:
    app = rmq_app
    reminded: list[str] = []

    @app.consumer("payments", group="settle", retry=60.0)
    async def settle(msg: rmq.Message) -> None:
        raise RuntimeError("the bank is closed")

    @app.consumer("reminders", group="remind")
    async def remind(msg: rmq.Message) -> None:
        reminded.append(msg.body)

    async with app:
        await app.send("payments", "p-1")
        await app.send("reminders", "tomorrow", delay=3600)

    stats = await run_until_idle(app, scheduled=False)

    assert stats["payments/settle"].retried == 1
    assert reminded == []
    async with app:
        left = sorted(await backlog(app), key=lambda b: b.consumer)
        assert await backlog(app, scheduled=False) == []
    assert [(b.consumer, b.retrying, b.delayed) for b in left] == [
        ("payments/settle", 1, 0),
        ("reminders/remind", 0, 1),
    ]


async def test_a_timeout_names_what_is_left_and_loses_nothing(rmq_redis_url: str) -> None:
    app = rmq.App(settings(rmq_redis_url, shutdown_grace=0.2))
    never = anyio.Event()

    @app.consumer("slow", group="g")
    async def wait_forever(msg: rmq.Message) -> None:
        await never.wait()

    async with app:
        await app.send("slow", "stuck")
    with pytest.raises(TimeoutError, match=r"not idle after 0\.5s: slow/g queue \d: 1 pending"):
        await run_until_idle(app, timeout=0.5)
    async with app:
        (left,) = await backlog(app)
    assert left.consumer == "slow/g" and left.pending == 1  # handed back, still there
    delete_namespace(rmq_redis_url, app.settings.namespace)


async def test_only_waits_for_the_consumers_named(rmq_redis_url: str) -> None:
    app = rmq.App(settings(rmq_redis_url, shutdown_grace=0.2))
    never = anyio.Event()
    fast: list[int] = []

    @app.consumer("fast", group="g")
    async def quick(msg: rmq.Message) -> None:
        fast.append(msg.body)

    @app.consumer("slow", group="g")
    async def stuck(msg: rmq.Message) -> None:
        await never.wait()

    async with app:
        await app.send("slow", 0)
        for n in range(10):
            await app.send("fast", n)
    await run_until_idle(app, only=["fast/g"], timeout=10)

    assert sorted(fast) == list(range(10))
    delete_namespace(rmq_redis_url, app.settings.namespace)


async def test_an_unknown_lag_is_settled_by_reading_past_the_last_delivered_entry(
    rmq_redis_url: str, rmq_namespace: str
) -> None:
    app = rmq.App(settings(rmq_redis_url, rmq_namespace, default_queues=1))
    got: list[int] = []

    @app.consumer("gaps", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with app:
        sent = [await app.send("gaps", n) for n in range(3)]
        stream = app.context.keys.queue("gaps", 0).stream
        with redis.Redis.from_url(rmq_redis_url) as client:
            client.xdel(stream, sent[1].offset)  # a hole after the group's position
            (row,) = client.xinfo_groups(stream)
        assert row["lag"] is None  # Redis cannot tell: the fallback is what is tested
        (left,) = await backlog(app)
        assert (left.consumer, left.unread, left.pending) == ("gaps/g", 1, 0)

    await run_until_idle(app)

    assert got == [0, 2]


def test_bind_points_an_app_at_the_test_server_then_restores_it(
    rmq_redis_url: str, rmq_namespace: str
) -> None:
    app = rmq.App(rmq.Settings(redis_url="redis://db.internal:6379/0", namespace="prod"))
    with bind(app, rmq_redis_url, rmq_namespace) as bound:
        assert bound is app
        assert (app.settings.redis_url, app.settings.namespace) == (rmq_redis_url, rmq_namespace)
    assert (app.settings.redis_url, app.settings.namespace) == (
        "redis://db.internal:6379/0",
        "prod",
    )


async def test_bind_refuses_an_open_app(rmq_app: rmq.App, rmq_redis_url: str) -> None:
    async with rmq_app:
        with pytest.raises(rmq.ConfigError, match="closed app"), bind(rmq_app, rmq_redis_url, "x"):
            pass


def test_settings_ignore_the_environment(
    monkeypatch: pytest.MonkeyPatch, rmq_redis_url: str
) -> None:
    monkeypatch.setenv("RMQ_NAMESPACE", "production")
    monkeypatch.setenv("RMQ_SHUTDOWN_GRACE", "600")
    made = settings(rmq_redis_url)
    assert made.namespace.startswith("test") and made.namespace != settings(rmq_redis_url).namespace
    assert made.shutdown_grace == rmq.testing.TEST_SETTINGS["shutdown_grace"]


async def test_delete_namespace_deletes_only_that_namespace(rmq_redis_url: str) -> None:
    first, second = (rmq.App(settings(rmq_redis_url)) for _ in range(2))
    for app in (first, second):
        async with app:
            await app.send("orders", "x", delay=60)
            await app.send("orders", "y")
    deleted = delete_namespace(rmq_redis_url, first.settings.namespace)
    with redis.Redis.from_url(rmq_redis_url) as client:
        assert deleted > 2
        assert list(client.scan_iter(match=f"{first.settings.namespace}:*")) == []
        assert list(client.scan_iter(match=f"{second.settings.namespace}:*")) != []
    delete_namespace(rmq_redis_url, second.settings.namespace)


def test_server_is_a_real_server_for_the_block() -> None:
    with rmq.testing.server() as started, started.client() as client:
        assert client.ping()
        process, data_dir = started.process, started.data_dir
    assert process is not None and process.poll() is not None
    assert not os.path.exists(data_dir)


def test_server_says_what_to_install_when_there_is_no_binary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rmq.testing.harness, "find_server_binary", lambda kind: None)
    with pytest.raises(FileNotFoundError, match=r"rmq-streams\[testing\]"), rmq.testing.server():
        pass


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(3, server_binary()) as started:
        yield started


@pytest.mark.cluster
async def test_on_a_cluster(cluster: EmbeddedCluster) -> None:
    app = rmq.App(settings(cluster.url, default_queues=6))  # queues spread over the nodes
    handled: list[int] = []
    heard: list[int] = []

    @app.consumer("orders", group="billing")
    async def bill(msg: rmq.Message) -> None:
        handled.append(msg.body)

    @app.consumer("orders", group="all", model="broadcasting", instance_id="one", start="first")
    async def listen(msg: rmq.Message) -> None:
        heard.append(msg.body)

    async with app:
        for n in range(30):
            await app.send("orders", n)
    await run_until_idle(app)

    assert sorted(handled) == sorted(heard) == list(range(30))
    assert delete_namespace(cluster.url, app.settings.namespace) > 6
    assert delete_namespace(cluster.url, app.settings.namespace) == 0
