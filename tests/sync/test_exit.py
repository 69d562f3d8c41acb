"""Interpreter exit: a process that sends one-way messages and exits without flushing or closing
still stores every one of them (the client closes, so flushes, at exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import redis

from tests.sync.conftest import stored

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import rmq.sync

    client = rmq.sync.App(redis_url=sys.argv[1], namespace=sys.argv[2])
    count = int(sys.argv[3])

    def more(k):  # a plain (non-daemon) thread still sending while the main thread ends
        for i in range(count):
            client.send_oneway("logs", f"thread {k} line {i}")

    threads = [threading.Thread(target=more, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for i in range(count):
        client.send_oneway("logs", f"main line {i}")
    print("main done", flush=True)
    # no flush, no close: the interpreter exits here
    """
)


def test_one_way_sends_are_stored_when_the_interpreter_exits(
    redis_url: str, namespace: str, r: redis.Redis, tmp_path: Path
) -> None:
    script = tmp_path / "sender.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    count = 2000
    done = subprocess.run(
        [sys.executable, str(script), redis_url, namespace, str(count)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "main done"
    assert done.stderr == ""
    bodies = set(stored(r, namespace, "logs").values())
    expected = {f"main line {i}".encode() for i in range(count)}
    expected |= {f"thread {k} line {i}".encode() for k in range(4) for i in range(count)}
    assert bodies == expected
