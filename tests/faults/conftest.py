"""Fixtures of the fault scenarios: a private server per test, a fault proxy in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from rmq.embedded import EmbeddedServer
from tests.proxy import FaultProxy


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    """A private server: fault scenarios never share one (a proxy cuts all its links)."""
    return server_factory().start()


@pytest.fixture
async def proxy(server: EmbeddedServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(server.port, seed=17) as p:
        yield p


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    """A plain client straight to the server (past the proxy), for inspecting state."""
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()
