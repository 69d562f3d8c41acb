"""Startup and shutdown hooks, `app.state`, and running some consumers (`app.run(only=...)`)."""

from __future__ import annotations

import logging
from functools import partial

import anyio
import pytest

import rmq
from rmq.errors import WorkerStartError
from rmq.testing import run_until_idle
from tests.helpers import running, wait_until


async def test_hooks_run_once_around_consuming_and_handlers_reach_the_state(
    app: rmq.App,
) -> None:
    events: list[str] = []

    @app.on_startup
    async def open_pool() -> None:
        events.append("open pool")
        app.state.pool = ["connection"]

    @app.on_startup
    def warm_cache() -> None:  # plain functions are hooks too
        events.append(f"warm cache with {app.state.pool}")

    @app.on_shutdown
    async def close_pool() -> None:
        events.append("close pool")
        app.state.pool.clear()

    @app.on_shutdown
    def flush_cache() -> None:
        events.append("flush cache")

    @app.consumer("orders", group="billing", start="first")
    async def bill(msg: rmq.Message) -> None:
        events.append(f"bill {msg.body} with {app.state.pool[0]}")

    async with app:
        await app.send("orders", 1)
        assert events == []  # entering the app is not a worker's start
    await run_until_idle(app)
    assert events == [
        "open pool",
        "warm cache with ['connection']",
        "bill 1 with connection",
        "flush cache",  # reverse order: what started last stops first
        "close pool",
    ]
    assert "pool" in repr(app.state)


async def test_a_failing_startup_hook_stops_before_consuming(app: rmq.App) -> None:
    handled: list[object] = []
    shut: list[str] = []

    @app.on_startup
    async def connect() -> None:
        raise ConnectionRefusedError("db:5432 refused the connection")

    @app.on_shutdown
    def close() -> None:
        shut.append("closed")

    @app.consumer("orders", group="billing", start="first")
    async def bill(msg: rmq.Message) -> None:
        handled.append(msg.body)

    async with app:
        await app.send("orders", 1)
    with pytest.raises(WorkerStartError) as caught:
        await app.run(handle_signals=False)
    assert str(caught.value) == (
        "startup hook test_a_failing_startup_hook_stops_before_consuming.<locals>.connect "
        "failed: ConnectionRefusedError: db:5432 refused the connection"
    )
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert handled == [] and shut == []  # nothing consumed, nothing to close
    async with app:
        groups = await app.admin.groups("orders")
    assert [(g.group, g.lag) for g in groups] == [("billing", 1)]  # the message waits


async def test_a_failing_shutdown_hook_is_logged_and_the_others_run(
    app: rmq.App, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @app.on_shutdown
    def first() -> None:
        ran.append("first")

    @app.on_shutdown
    async def broken() -> None:
        raise RuntimeError("cannot close")

    @app.consumer("orders", group="billing")
    async def bill(msg: rmq.Message) -> None:
        pass

    with caplog.at_level(logging.ERROR, logger="rmq.app"):
        async with running(app):
            pass
    assert ran == ["first"]
    assert any("shutdown hook" in r.message and "broken" in r.message for r in caplog.records)


def test_hooks_are_checked_when_registered(app: rmq.App) -> None:
    with pytest.raises(rmq.ConfigError, match="takes a function"):
        app.on_startup(42)  # type: ignore[type-var]

    def needs(app: rmq.App) -> None: ...

    with pytest.raises(rmq.ConfigError, match="must take no arguments"):
        app.on_shutdown(needs)  # type: ignore[type-var]


async def test_run_only_some_consumers(app: rmq.App) -> None:
    seen: list[str] = []
    for topic, group in [("jobs", "a"), ("jobs", "b"), ("other", "c")]:

        @app.consumer(topic, group=group, start="first")
        async def handle(msg: rmq.Message) -> None:
            seen.append(f"{msg.topic}/{msg.group}")

    assert [s.name for s in app.select(["jobs"])] == ["jobs/a", "jobs/b"]
    assert [s.name for s in app.select(["other", "jobs/b"])] == ["jobs/b", "other/c"]
    with pytest.raises(rmq.ConfigError, match=r"'jobs/z' matches no consumer .*jobs/a, jobs/b"):
        app.select(["jobs/z"])
    with pytest.raises(rmq.InvalidName):
        app.select(["bad topic"])
    async with app:
        await app.send("jobs", 1)
        await app.send("other", 2)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False, only=["jobs/b"]))
        assert [r.spec.name for r in app.running_consumers] == ["jobs/b"]
        await wait_until(lambda: bool(seen), what="a message of jobs/b")
        app.stop()
    assert seen == ["jobs/b"]
    async with app:
        lags = {g.group: g.lag for t in ("jobs", "other") for g in await app.admin.groups(t)}
    assert lags == {"a": 1, "b": 0, "c": 1}
