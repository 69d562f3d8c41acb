"""`rmq worker run` when the app cannot start: a documented exit code (4; 3 when Redis cannot be
reached), one line on stderr saying why, and a supervisor that does not restart such a child but
stops with its reason. (It used to exit 0 without a word, and the supervisor restarted the child
forever.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from rmq.embedded import EmbeddedServer

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.recorder:app"


def run_worker(url: str, namespace: str, *args: str, **env: str) -> tuple[int, list[str], float]:
    """Run `rmq worker run tests.apps.recorder:app *args`; (exit code, stderr lines, seconds)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "RECORDER_"))}
    environ.update(
        RMQ_REDIS_URL=url, RMQ_NAMESPACE=namespace, RMQ_STARTUP_TIMEOUT="2",
        RMQ_CONNECT_TIMEOUT="0.5", RMQ_RESTART_DELAY="0.1", PYTHONUNBUFFERED="1", **env,
    )  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rmq", "worker", "run", APP, *args],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=40,
    )  # fmt: skip
    return done.returncode, done.stderr.strip().splitlines(), time.monotonic() - started


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


def test_missing_topic_with_strict_topics(server: EmbeddedServer, namespace: str) -> None:
    code, lines, _ = run_worker(server.url, namespace, RMQ_STRICT_TOPICS="1")
    assert code == 4, lines
    assert lines == [
        f"error: cannot start {APP}: topic 'chaos' does not exist and strict_topics is on; "
        "create it first (rmq topic create chaos)"
    ]


def test_the_supervisor_does_not_restart_a_child_that_cannot_start(
    server: EmbeddedServer, namespace: str
) -> None:
    """Two processes; each fails at start. The supervisor starts each once, stops, and exits 4
    with the reason as its last line."""
    code, lines, took = run_worker(server.url, namespace, "--processes", "2", RMQ_STRICT_TOPICS="1")
    assert code == 4, lines
    assert lines[-1].startswith("error: worker process ")
    assert f"cannot start {APP}: topic 'chaos' does not exist" in lines[-1]
    started = [line for line in lines if " started (pid " in line]
    assert len(started) == 2, lines  # no restart
    assert not any("; restarting in" in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)
    assert took < 30


def test_acl_user_without_permissions(server: EmbeddedServer, namespace: str) -> None:
    admin = redis.Redis(port=server.port)
    admin.execute_command("ACL", "SETUSER", "weak", "on", ">weak-pw", "~*", "+@connection")
    admin.close()
    url = f"redis://weak:weak-pw@127.0.0.1:{server.port}/0"
    code, lines, _ = run_worker(url, namespace)
    assert code == 4, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot start {APP}: ")
    assert "lacks a permission" in lines[0] and "NOPERM" in lines[0]
    assert "weak-pw" not in lines[0]


def test_full_redis_while_declaring_groups(
    server_factory: type[EmbeddedServer], namespace: str
) -> None:
    full = server_factory(extra_args=("--maxmemory", "1", "--maxmemory-policy", "noeviction"))
    full.start()
    code, lines, _ = run_worker(full.url, namespace)
    assert code == 4, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot start {APP}: ")
    assert "Redis is full" in lines[0]


def test_bad_redis_url_is_a_usage_error(namespace: str) -> None:
    code, lines, _ = run_worker("redis://u:hunter2@localhost:notaport/0", namespace)
    assert code == 2, lines
    assert len(lines) == 1 and "malformed" in lines[0] and "hunter2" not in lines[0]
