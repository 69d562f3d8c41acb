"""Fixtures of the script tests: a decoding client with every script loaded, and queue 0's keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from rmq.keys import NamespaceKeys, QueueKeys
from tests.scripts import SCRIPTS, connect, queue_keys


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    async with connect(redis_url) as c:
        await SCRIPTS.load_all(c)
        yield c


@pytest.fixture
def q(namespace: str) -> QueueKeys:
    """Keys of queue 0 of topic "orders" in the test's namespace."""
    return queue_keys(namespace)


@pytest.fixture
def channel(namespace: str) -> str:
    """The wake channel of topic "orders" (the scripts publish there when a message is due)."""
    return NamespaceKeys(namespace).wake("orders")
