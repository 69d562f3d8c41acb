"""A worker app for the runner and metrics tests, run by `rmq worker run tests.apps.runner_app:app`.

Configured by environment variables:

- `RUNNER_TOPIC` / `RUNNER_GROUP`: what it consumes (default `jobs` / `runners`, from the first
  message);
- `RUNNER_SLEEP`: seconds each message takes (default 0);
- `RUNNER_IMPORT_SLEEP`: seconds this module takes to import in a supervisor's worker process
  (a slow start; the supervisor itself imports it at once);
- `RUNNER_OUT`: a file the handler appends `start <pid> <msg_id>` and `done <pid> <msg_id>` lines
  to (one unbuffered `os.write` each, as tests/apps/recorder.py does).

The counters on the runner's `/metrics` come from the push consumer's own instrumentation.
"""

from __future__ import annotations

import os
import sys
import time

import anyio

import rmq

TOPIC = os.environ.get("RUNNER_TOPIC", "jobs")
GROUP = os.environ.get("RUNNER_GROUP", "runners")
SLEEP = float(os.environ.get("RUNNER_SLEEP", "0"))
OUT = os.environ.get("RUNNER_OUT", "")
if "--failure-file" in sys.argv:  # a supervisor's worker process
    time.sleep(float(os.environ.get("RUNNER_IMPORT_SLEEP", "0")))

app = rmq.App()
_fd: int | None = None


def _record(event: str, msg_id: str) -> None:
    global _fd
    if not OUT:
        return
    if _fd is None:
        _fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{event} {os.getpid()} {msg_id}\n".encode())


@app.consumer(TOPIC, group=GROUP, start="first")
async def handle(msg: rmq.Message) -> None:
    _record("start", msg.msg_id)
    if SLEEP > 0:
        await anyio.sleep(SLEEP)
    _record("done", msg.msg_id)
