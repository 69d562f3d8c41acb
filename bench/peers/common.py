"""What every driver, worker and the runner share: the payload and the completion recorder.

Standard library only: it is imported by rmq's venv and by the peers' venvs (bench/.venv-peers,
bench/.venv-arq), in the runner and in every worker process.

A worker's no-op handler calls `RECORD(body)`: it appends (id, reference time, now) in memory; a
daemon thread per process appends them (raw doubles) to `$BENCH_OUT/<pid>-<random>.rec` every
50 ms, so measuring adds no Redis round trip and almost no CPU. The reference time `t` in the
body is the send time (or the due time of a delayed message), so `done - t` is the end-to-end
latency (or the lateness).
"""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

PAD = "x" * 60
FLUSH_SECONDS = 0.05
OUT_ENV = "BENCH_OUT"
URL_ENV = "BENCH_REDIS_URL"
RECORD_BYTES = 3 * 8  # (id, t, done) as native doubles


def payload(i: int, t: float | None = None) -> dict[str, Any]:
    """`{"i": i, "t": send time, "pad": 60 x "x"}`: about 100 bytes as JSON."""
    return {"i": i, "t": time.time() if t is None else t, "pad": PAD}


def redis_url() -> str:
    """The Redis the runner points drivers and workers at."""
    return os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0")


class Recorder:
    """Records completions of one process; call it with the message body.

    One `array('d')` of (id, t, done) triplets: `extend` is a single C call (atomic under the
    GIL, so the flush thread's swap never splits a triplet), and the thread writes the raw
    doubles with `tofile`, so recording costs the handler and the GIL almost nothing.
    """

    def __init__(self) -> None:
        self._buf = array("d")
        self._started = False
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forked)  # prefork pools: a file per child

    def __call__(self, body: Mapping[str, Any]) -> None:
        if not self._started:
            self._start()
        self._buf.extend((body["i"], body["t"], time.time()))

    def _forked(self) -> None:
        self._buf = array("d")
        self._started = False
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._buf = array("d")
            self._started = True
            out = Path(os.environ.get(OUT_ENV, "."))
            path = out / f"{os.getpid()}-{os.urandom(3).hex()}.rec"
            threading.Thread(target=self._flush_loop, args=(path,), daemon=True).start()

    def _flush_loop(self, path: Path) -> None:
        with path.open("ab") as f:
            while True:
                time.sleep(FLUSH_SECONDS)
                batch, self._buf = self._buf, array("d")
                if batch:
                    batch.tofile(f)
                    f.flush()


RECORD = Recorder()


class Reader:
    """Reads the records of every worker process in `directory` as they are appended."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}

    def new(self) -> Iterator[tuple[int, float, float]]:
        for path in sorted(self.directory.glob("*.rec")):
            with path.open("rb") as f:
                f.seek(self._offsets.get(path, 0))
                data = f.read()
            end = len(data) - len(data) % RECORD_BYTES  # a record being written: next time
            self._offsets[path] = self._offsets.get(path, 0) + end
            values = array("d")
            values.frombytes(data[:end])
            for k in range(0, len(values), 3):
                yield int(values[k]), values[k + 1], values[k + 2]
