"""A worker app for the chaos tests, run as a subprocess:

    python -m rmq worker run tests.apps.recorder:app     (cwd = the repository root)

Settings come from the `RMQ_*` environment variables (`Settings.from_env`). The one consumer is
configured by:

- `RECORDER_TOPIC` / `RECORDER_GROUP`: what it consumes (default `chaos` / `recorder`);
- `RECORDER_CONCURRENCY`: handler concurrency (default: the `concurrency` setting);
- `RECORDER_SLEEP`: seconds each message takes (default 0);
- `RECORDER_OUT`: the file the handler appends to (required to record anything).

The handler appends `start <msg_id>` when it begins and `done <msg_id>` when it returns, each with
one unbuffered `os.write` on an `O_APPEND` descriptor: a line is in the file (the page cache) as
soon as the call returns, so a SIGKILL never loses the record of a finished handler, and lines of
concurrent handlers never interleave.
"""

from __future__ import annotations

import os

import anyio

import rmq

TOPIC = os.environ.get("RECORDER_TOPIC", "chaos")
GROUP = os.environ.get("RECORDER_GROUP", "recorder")
CONCURRENCY = int(os.environ.get("RECORDER_CONCURRENCY", "0")) or None
SLEEP = float(os.environ.get("RECORDER_SLEEP", "0"))
OUT = os.environ.get("RECORDER_OUT", "")

app = rmq.App()

_fd: int | None = None


def _record(event: str, msg_id: str) -> None:
    global _fd
    if not OUT:
        return
    if _fd is None:
        _fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{event} {msg_id}\n".encode())


@app.consumer(TOPIC, group=GROUP, concurrency=CONCURRENCY, start="first")
async def record(msg: rmq.Message) -> None:
    _record("start", msg.msg_id)
    if SLEEP > 0:
        await anyio.sleep(SLEEP)
    _record("done", msg.msg_id)
