"""A worker app whose handler kills its own process on poison messages, for the chaos tests:

    python -m rmq worker run tests.apps.poison:app --processes 2     (cwd = the repository root)

Settings come from the `RMQ_*` environment variables. The consumer reads `RECORDER_TOPIC`
(default `chaos`) and `RECORDER_OUT` like `tests.apps.recorder`, in group `poison`, one message at
a time (`concurrency=1`, `prefetch=1`: a dying process holds only the message that killed it),
with `max_deliveries=2`.

A body of `"exit"` ends the process at once (`os._exit(17)`: no cleanup, no outcome written); a
body of `"segfault"` crashes it (a NULL read through ctypes); anything else is recorded as handled
(`start <msg_id>` / `done <msg_id>` lines, as the recorder app writes them).
"""

from __future__ import annotations

import ctypes
import os

import rmq

TOPIC = os.environ.get("RECORDER_TOPIC", "chaos")
GROUP = "poison"
MAX_DELIVERIES = 2
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


@app.consumer(
    TOPIC, group=GROUP, start="first", concurrency=1, prefetch=1, max_deliveries=MAX_DELIVERIES
)
async def handle(msg: rmq.Message) -> None:
    _record("start", msg.msg_id)
    if msg.body == "exit":
        os._exit(17)
    if msg.body == "segfault":
        ctypes.string_at(0)  # SIGSEGV
    _record("done", msg.msg_id)
