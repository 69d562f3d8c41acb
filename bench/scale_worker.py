"""The app bench/scale.py runs as a separate worker process: `rmq worker run scale_worker:app`.

Configured by the environment the scale harness sets (`bench/scale_probe.py` starts it):

- RMQ_REDIS_URL, RMQ_NAMESPACE and any other RMQ_* setting (rmq.Settings.from_env);
- SCALE_TOPICS: how many topics (`t0`, `t1`, ...), SCALE_GROUPS: groups per topic (`g0`, ...);
- SCALE_RECORD=<path>: the time each message was handled is appended to that file (raw
  doubles, written from the event loop every 50 ms: no thread, no Redis command).

Handlers are async no-ops; groups start at the first entry, so a prefilled backlog is consumed.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array

import rmq

TOPICS = int(os.environ.get("SCALE_TOPICS", "1"))
GROUPS = int(os.environ.get("SCALE_GROUPS", "1"))
RECORD_PATH = os.environ.get("SCALE_RECORD", "")
FLUSH_SECONDS = 0.05


class Recorder:
    """Handling times, buffered and appended to a file by the event loop itself."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.buffer = array("d")
        self.scheduled = False

    def __call__(self) -> None:
        self.buffer.append(time.time())
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        batch, self.buffer = self.buffer, array("d")
        with open(self.path, "ab") as f:
            batch.tofile(f)


recorder = Recorder(RECORD_PATH)
app = rmq.App()


async def record(msg: rmq.Message) -> None:
    recorder()


async def ignore(msg: rmq.Message) -> None:
    return None


for t in range(TOPICS):
    for g in range(GROUPS):
        app.consumer(f"t{t}", group=f"g{g}", start="first")(record if RECORD_PATH else ignore)
