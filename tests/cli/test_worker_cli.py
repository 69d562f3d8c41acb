"""rmq worker run|check: argument handling and the heartbeat check (the runner: test_runner)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from rmq.health import heartbeat_key
from tests.cli.conftest import Invoke, as_json

TARGET = "tests.apps.runner_app:app"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`worker run` configures the root logger: put pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_check_reads_heartbeats_of_this_host(cli: Invoke, r: redis.Redis, namespace: str) -> None:
    key = heartbeat_key(namespace, TARGET)
    down = cli("worker", "check", TARGET, code=1)
    assert "no worker process" in down.stderr
    now = int(time.time() * 1000)
    r.zadd(key, {f"elsewhere:{os.getpid()}": now})  # another host's worker does not count
    cli("worker", "check", TARGET, code=1)
    r.zadd(key, {f"{socket.gethostname()}:123": now - 3_600_000})  # stale
    cli("worker", "check", TARGET, code=1)
    r.zadd(key, {f"{socket.gethostname()}:456": now})
    assert "ok: 1 worker process" in cli("worker", "check", "tests.apps.runner_app").stdout
    doc = as_json(cli("worker", "check", TARGET, "--json"))
    assert doc["healthy"] is True and doc["alive"] == [f"{socket.gethostname()}:456"]


def test_check_without_redis_is_unhealthy(cli: Invoke, env: dict[str, str]) -> None:
    from rmq.embedded import free_port

    closed = {**env, "RMQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = cli("worker", "check", TARGET, env=closed, code=1)
    assert "unreachable" in result.stderr


def test_bad_targets_are_usage_errors(cli: Invoke) -> None:
    for target in ("no_such_module:app", ":app", "tests.apps.runner_app:nothing", "tests.helpers"):
        result = cli("worker", "run", target, code=2)
        assert "Traceback" not in result.output
        cli("worker", "check", target, code=2)
    cli("worker", "run", TARGET, "--processes", "0", code=2)
    cli("worker", "run", TARGET, "--log-format", "xml", code=2)


def test_run_without_redis_exits_3(cli: Invoke, env: dict[str, str]) -> None:
    from rmq.embedded import free_port

    closed = {**env, "RMQ_REDIS_URL": f"redis://:pw@127.0.0.1:{free_port()}/0"}
    result = cli("worker", "run", TARGET, env=closed, code=3)
    assert "unavailable" in result.stderr and "pw@" not in result.stderr


def test_run_on_a_busy_port_fails_cleanly(cli: Invoke) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = cli("worker", "run", TARGET, "--health-port", port, code=4)
    assert "cannot listen" in result.stderr
