"""Every command once as a real `python -m rmq` subprocess (worker run and metrics serve run as
subprocesses in test_runner.py and below)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

from rmq.embedded import free_port
from tests.cli.conftest import REPO_ROOT, run_many, run_rmq, subprocess_env


def test_commands_as_subprocesses(env: dict[str, str]) -> None:
    """The command line as users run it: exit codes, stdout, stderr (a few commands per phase,
    in parallel: each subprocess takes about a second to start)."""
    sent = run_rmq(["send", "orders", "--json", "-k", "order-1"], env, input=b"hello")
    assert sent.returncode == 0, sent.stderr
    msg = json.loads(sent.stdout)
    unreachable = {**env, "RMQ_REDIS_URL": f"redis://:pw@127.0.0.1:{free_port()}/0"}
    version, shown, consumed, usage, check, down = run_many(
        [
            ["--version"],
            ["message", "show", "orders", msg["msg_id"], "--json"],
            ["consume", "orders", "-g", "billing", "--from", "first", "-n", "1", "--json"],
            ["topic", "status"],
            ["worker", "check", "tests.apps.runner_app:app"],
            ["topic", "list"],
        ],
        env,
        envs=[None, None, None, None, None, unreachable],
    )
    assert version.returncode == 0 and b"server: " in version.stdout
    assert shown.returncode == 0 and json.loads(shown.stdout)["body"] == "hello"
    assert consumed.returncode == 0 and json.loads(consumed.stdout)["msg_id"] == msg["msg_id"]
    assert usage.returncode == 2 and b"--help shows the usage" in usage.stderr
    assert check.returncode == 1  # no worker is running
    assert down.returncode == 3 and b"unreachable" in down.stderr
    assert b"pw@" not in down.stderr + down.stdout
    for result in (version, shown, consumed, usage, check, down):
        assert b"Traceback" not in result.stderr

    reset, refused = run_many(
        [
            ["group", "reset-offset", "orders", "billing", "--to-first", "--yes", "--json"],
            ["topic", "delete", "orders"],  # no --yes and no answer on stdin: refused
        ],
        env,
    )
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout)["to"] == "first"
    assert refused.returncode == 1 and b"aborted" in refused.stderr

    reads = [
        ["group", "list", "--json"],
        ["group", "progress", "orders", "billing", "--json"],
        ["group", "consumers", "orders", "billing", "--json"],
        ["message", "query", "orders", "--key", "order-1", "--json"],
        ["message", "print", "orders", "--json"],
        ["dlq", "count", "orders", "billing", "--json"],
        ["dlq", "list", "orders", "billing", "--json"],
        ["transaction", "count", "orders", "--json"],
        ["transaction", "list", "orders", "--json"],
        ["metrics", "--help"],
    ]
    for args, result in zip(reads, run_many(reads, env), strict=True):
        assert result.returncode == 0, (args, result.stderr)
        assert b"Traceback" not in result.stderr
        if "--json" in args:
            json.loads(result.stdout)
    assert run_rmq(["topic", "delete", "orders", "--yes"], env).returncode == 0


def test_metrics_serve(env: dict[str, str]) -> None:
    port = free_port()
    run_rmq(["send", "orders", "x"], env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rmq", "metrics", "serve", "--port", str(port)],
        cwd=REPO_ROOT, env=subprocess_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=2) as reply:
                    text = reply.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
        assert 'rmq_stream_length{topic="orders"} 1.0' in text
        assert "rmq_redis_up 1.0" in text
        assert "rmq_messages_consumed_total" not in text  # the exporter has no in-process counters
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
