"""A worker app whose handler fails on purpose, for the retry chaos tests, run as a subprocess:

    python -m rmq worker run tests.apps.flaky:app     (cwd = the repository root)

Settings come from the `RMQ_*` environment variables (`Settings.from_env`). The one consumer reads
the same `RECORDER_*` variables as `tests.apps.recorder` (so `tests.chaos.worker_env` keeps the
caller's environment out): `RECORDER_TOPIC` / `RECORDER_GROUP` (default `chaos` / `flaky`),
`RECORDER_CONCURRENCY`, `RECORDER_SLEEP` (seconds per attempt) and `RECORDER_OUT`.

Message bodies are ints. What the handler does depends only on the body and the retry count, so
every delivery of a message, by any worker, behaves the same:

- `body % 3 == 0`: always fails (retried `MAX_RETRIES` times, then dead-lettered);
- `body % 3 == 1`: fails on its first attempt (`reconsume_times == 0`), then succeeds;
- otherwise: succeeds.

It appends `start <msg_id>` when an attempt begins, `fail <msg_id>` before raising and
`done <msg_id>` when it returns, each with one `os.write` on an `O_APPEND` descriptor (see
`tests.apps.recorder`: a finished attempt's line survives a SIGKILL).
"""

from __future__ import annotations

import os

import anyio

import rmq

TOPIC = os.environ.get("RECORDER_TOPIC", "chaos")
GROUP = os.environ.get("RECORDER_GROUP", "flaky")
CONCURRENCY = int(os.environ.get("RECORDER_CONCURRENCY", "0")) or None
SLEEP = float(os.environ.get("RECORDER_SLEEP", "0"))
OUT = os.environ.get("RECORDER_OUT", "")

RETRY = [0.05, 0.1]
"""Seconds before the first and the second retry."""
MAX_RETRIES = 2

app = rmq.App()

_fd: int | None = None


class Flaky(Exception):
    """The failure the handler raises on purpose."""


def always_fails(body: int) -> bool:
    return body % 3 == 0


def fails_once(body: int) -> bool:
    return body % 3 == 1


def _record(event: str, msg_id: str) -> None:
    global _fd
    if not OUT:
        return
    if _fd is None:
        _fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{event} {msg_id}\n".encode())


@app.consumer(
    TOPIC,
    group=GROUP,
    concurrency=CONCURRENCY,
    start="first",
    retry=RETRY,
    max_retries=MAX_RETRIES,
)
async def flaky(msg: rmq.Message) -> None:
    _record("start", msg.msg_id)
    if SLEEP > 0:
        await anyio.sleep(SLEEP)
    body = int(msg.body)
    if always_fails(body) or (fails_once(body) and msg.reconsume_times == 0):
        _record("fail", msg.msg_id)
        raise Flaky(f"body {body}, attempt {msg.reconsume_times + 1}")
    _record("done", msg.msg_id)
