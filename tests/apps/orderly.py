"""An orderly worker app for the chaos tests, run as a subprocess:

    python -m rmq worker run tests.apps.orderly:app     (cwd = the repository root)

Settings come from the `RMQ_*` environment variables (`Settings.from_env`). The one
`mode="orderly"` consumer is configured by:

- `RECORDER_TOPIC` / `RECORDER_GROUP`: what it consumes (default `ordered` / `orderly`);
- `RECORDER_SLEEP`: seconds each message takes (default 0), slept *before* recording, so a line
  means "this handler ran to completion";
- `RECORDER_OUT`: the file the handler appends to (required to record anything);
- `ORDERLY_MEMBER`: a prefix for this member's name (default: rmq's `<host>-<pid>-<random>`).
  Members are sorted by name to share the queues out, so a test can decide which member a queue
  goes to (the name is `<prefix>-<pid>`, still unique per process).

Message bodies are `{"key": <sharding key>, "seq": <n>}`. For every message the handler appends
`<pid> <key> <seq> <msg_id>` with one unbuffered `os.write` on an `O_APPEND` descriptor: the line
is in the file as soon as the call returns (a SIGKILL never loses it), and lines written by
several processes to one file never interleave, so one shared file gives the global order of
handlings.
"""

from __future__ import annotations

import os

import anyio

import rmq

TOPIC = os.environ.get("RECORDER_TOPIC", "ordered")
GROUP = os.environ.get("RECORDER_GROUP", "orderly")
SLEEP = float(os.environ.get("RECORDER_SLEEP", "0"))
OUT = os.environ.get("RECORDER_OUT", "")
MEMBER = os.environ.get("ORDERLY_MEMBER", "")

app = rmq.App()
if MEMBER:
    app.name = f"{MEMBER}-{os.getpid()}"

_fd: int | None = None


def _record(line: str) -> None:
    global _fd
    if not OUT:
        return
    if _fd is None:
        _fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, line.encode())


@app.consumer(TOPIC, group=GROUP, mode="orderly", start="first")
async def record(msg: rmq.Message) -> None:
    if SLEEP > 0:
        await anyio.sleep(SLEEP)
    body = msg.body
    _record(f"{os.getpid()} {body['key']} {body['seq']} {msg.msg_id}\n")
