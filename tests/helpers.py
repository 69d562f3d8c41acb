"""Helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio

import rmq


def make_settings(redis_url: str, namespace: str, **overrides: object) -> rmq.Settings:
    """Settings with short timeouts, so fault scenarios run in seconds."""
    values: dict[str, object] = {
        "redis_url": redis_url,
        "namespace": namespace,
        "visibility_timeout": 2.0,
        "claim_interval": 0.3,
        "block_seconds": 0.5,
        "shutdown_grace": 5.0,
        "startup_timeout": 5.0,
        "send_timeout": 3.0,
        "backoff_base": 0.02,
        "backoff_cap": 0.5,
    }
    values.update(overrides)
    return rmq.Settings(**values)  # type: ignore[arg-type]


async def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll `condition` every 10 ms until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.01)


@asynccontextmanager
async def running(app: rmq.App) -> AsyncIterator[rmq.App]:
    """Run `app`'s consumers in the background for the duration of the block, then stop them."""
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))
        try:
            yield app
        finally:
            app.stop()
