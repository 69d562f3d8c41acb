"""A broadcasting worker app for the chaos tests, run as a subprocess:

    python -m rmq worker run tests.apps.broadcaster:app     (cwd = the repository root)

Settings come from the `RMQ_*` environment variables (`Settings.from_env`); no instance id is
set, so each process claims a host slot `<host>:<app_name>:<n>`. The one `model="broadcasting"`
consumer (`start="first"`) is configured by:

- `RECORDER_TOPIC` / `RECORDER_GROUP`: what it consumes (default `bcast` / `broadcaster`);
- `RECORDER_SLEEP`: seconds each message takes (default 0), slept before recording;
- `RECORDER_OUT`: the file the handler appends to (required to record anything).

Message bodies are ints. For every message the handler appends `<pid> <instance id> <body>
<msg_id>` with one unbuffered `os.write` on an `O_APPEND` descriptor (a finished handler's line
survives a SIGKILL; lines of concurrent handlers never interleave). A restarted process appends to
the same file, and the pid tells its lines from its predecessor's.
"""

from __future__ import annotations

import os

import anyio

import rmq

TOPIC = os.environ.get("RECORDER_TOPIC", "bcast")
GROUP = os.environ.get("RECORDER_GROUP", "broadcaster")
SLEEP = float(os.environ.get("RECORDER_SLEEP", "0"))
OUT = os.environ.get("RECORDER_OUT", "")

app = rmq.App()

_fd: int | None = None


def _record(line: str) -> None:
    global _fd
    if not OUT:
        return
    if _fd is None:
        _fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, line.encode())


def _instance_id() -> str:
    for consumer in app.running_consumers:
        instance = getattr(consumer, "instance_id", None)
        if instance:
            return str(instance)
    return "?"


@app.consumer(TOPIC, group=GROUP, model="broadcasting", start="first")
async def record(msg: rmq.Message) -> None:
    if SLEEP > 0:
        await anyio.sleep(SLEEP)
    _record(f"{os.getpid()} {_instance_id()} {msg.body} {msg.msg_id}\n")
