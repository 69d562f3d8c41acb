"""Fixtures for the blocking client: one per test, closed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

import rmq
import rmq.sync
from rmq.keys import NamespaceKeys


@pytest.fixture
def client(settings: rmq.Settings) -> Iterator[rmq.sync.App]:
    c = rmq.sync.App(settings)
    yield c
    c.close()


def stored(r: redis.Redis, namespace: str, topic: str, queues: int = 4) -> dict[str, bytes]:
    """msg_id -> body of every entry of `topic`'s queue streams."""
    out: dict[str, bytes] = {}
    for q in range(queues):
        entries: Any = r.xrange(NamespaceKeys(namespace).queue(topic, q).stream)
        for _entry_id, fields in entries:
            msg_id = fields[b"i"].decode()
            assert msg_id not in out, f"{msg_id} stored twice"
            out[msg_id] = fields[b"d"]
    return out
