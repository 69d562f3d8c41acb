"""The blocking client (`rmq.sync`) against sync redis-py XADD, in the same run.

One private redis-server; the same ~100-byte JSON payload as bench/core.py. Four figures, each
`--runs` times, raw and rmq alternating (the ratio is the median of the per-run ratios):

- one sender thread: `r.xadd(...)` one at a time vs `client.send(...)` one at a time (blocking
  until stored, so one round trip each);
- 16 sender threads: each thread `r.xadd(...)` one at a time on a client of its own (a pool of
  16 connections) vs 16 threads calling `client.send(...)` on one `rmq.sync.App` (their sends
  share round trips);
- one thread of one-way sends (`client.send_oneway`, then `flush()`), for reference;
- the floor of a stored-once send: rmq's `send` script (XADD plus the producer's dedup record)
  called with sync redis-py EVALSHA, one at a time, as `client.send` does for a lone sender.

    .venv/bin/python bench/sync.py             # N=20,000 per figure, 3 runs: about 40 s
    .venv/bin/python bench/sync.py --quick     # N=1,000, 1 run: seconds
    .venv/bin/python bench/sync.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

import rmq
import rmq.sync
from rmq.embedded import EmbeddedServer

PAD = "x" * 60
THREADS = 16
TARGETS = {"one_thread": 0.85, "threads": 1.0}


def payload(i: int) -> dict[str, Any]:
    return {"i": i, "t": time.time(), "pad": PAD}


def in_threads(count: int, work: Callable[[int, range], None]) -> float:
    """Run `work(k, ids)` in THREADS threads (ids split evenly); msgs/s of the whole."""
    start = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        start.wait()
        try:
            work(k, range(k, count, THREADS))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return count / (time.perf_counter() - t0)


class Bench:
    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self.seq = 0

    def client(self) -> rmq.sync.App:
        self.seq += 1
        return rmq.sync.App(redis_url=self.url, namespace=f"s{self.seq}")

    def raw_one(self) -> float:
        with redis.Redis.from_url(self.url) as r:
            r.ping()
            t0 = time.perf_counter()
            for i in range(self.count):
                r.xadd("raw", {"d": orjson.dumps(payload(i))})
            return self.count / (time.perf_counter() - t0)

    def rmq_one(self) -> float:
        with self.client() as client:
            client.send("bench", payload(0))  # connect, create the topic
            t0 = time.perf_counter()
            for i in range(self.count):
                client.send("bench", payload(i))
            return self.count / (time.perf_counter() - t0)

    def raw_threads(self) -> float:
        pool = redis.BlockingConnectionPool.from_url(self.url, max_connections=THREADS)
        r = redis.Redis(connection_pool=pool)
        r.ping()

        def work(k: int, ids: range) -> None:
            for i in ids:
                r.xadd("raw", {"d": orjson.dumps(payload(i))})

        try:
            return in_threads(self.count, work)
        finally:
            r.close()
            pool.disconnect()

    def rmq_threads(self) -> float:
        with self.client() as client:
            client.send("bench", payload(0))

            def work(k: int, ids: range) -> None:
                for i in ids:
                    client.send("bench", payload(i))

            return in_threads(self.count, work)

    def raw_script(self) -> float:
        """rmq's send script by hand: EVALSHA with what `client.send` passes for one message."""
        from rmq.ids import new_msg_id
        from rmq.scripts import Scripts

        with redis.Redis.from_url(self.url) as r:
            sha = r.script_load(Scripts()["send"].source)
            keys = ("{bench:0}:s", "{bench:0}:dd:session")
            t0 = time.perf_counter()
            for i in range(self.count):
                r.execute_command("EVALSHA", sha, 2, *keys, 30000, "0", new_msg_id(), "", "",
                                  b"", "2", orjson.dumps(payload(i)))  # fmt: skip
            return self.count / (time.perf_counter() - t0)

    def rmq_oneway(self) -> float:
        with self.client() as client:
            client.send("bench", payload(0))
            t0 = time.perf_counter()
            for i in range(self.count):
                client.send_oneway("bench", payload(i))
            client.flush()
            return self.count / (time.perf_counter() - t0)


FIGURES = [
    ("one_thread", "one sender thread, one send at a time (msgs/s)", "raw_one", "rmq_one"),
    ("threads", f"{THREADS} sender threads, one send at a time each (msgs/s)", "raw_threads",
     "rmq_threads"),
    ("oneway", "one thread of one-way sends, then flush (msgs/s)", "raw_one", "rmq_oneway"),
    ("script", "floor: rmq's send script by sync redis-py EVALSHA, one at a time (msgs/s)",
     "raw_one", "raw_script"),
]  # fmt: skip


def measure(url: str, count: int, runs: int) -> dict[str, Any]:
    bench = Bench(url, count)
    runs_by_key: dict[str, list[float]] = {}
    with redis.Redis.from_url(url) as admin:
        for rep in range(runs):
            for key, _, raw, mine in FIGURES:
                for name in (raw, mine):
                    if key in ("oneway", "script") and name == raw:
                        continue  # the raw figure of the first row serves as their reference
                    admin.flushall()
                    value = getattr(bench, name)()
                    runs_by_key.setdefault(name, []).append(value)
                    print(f"  sync {rep + 1}/{runs} {name:<12} {value:>10,.0f}", file=sys.stderr)
    figures = []
    for key, label, raw, mine in FIGURES:
        a, b = runs_by_key[mine], runs_by_key[raw]
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=False))
        goal = TARGETS.get(key)
        figures.append({
            "key": key, "label": label, "raw": statistics.median(b), "rmq": statistics.median(a),
            "ratio": ratio, "target": goal, "met": None if goal is None else ratio >= goal,
        })  # fmt: skip
    return {"count": count, "runs": runs, "threads": THREADS, "figures": figures,
            "values": runs_by_key}  # fmt: skip


def render(doc: dict[str, Any], level: int = 1) -> list[str]:
    head = "#" * level
    lines = [
        f"{head} Blocking client (rmq.sync) vs sync redis-py XADD",
        "",
        f"N={doc['count']:,} per figure, {doc['runs']} run(s), raw and rmq alternating; "
        "x raw is the median of the per-run ratios. The last two rows are compared with the "
        "one-thread raw figure; the last is what one stored-once send costs from sync redis-py, "
        "the floor of the first row.",
        "",
        "| measurement | sync redis-py XADD | rmq.sync | x raw | target |",
        "|---|---:|---:|---:|---|",
    ]
    for f in doc["figures"]:
        target = (
            ""
            if f["target"] is None
            else f">= {f['target']:g}x " + ("(met)" if f["met"] else "(not met)")
        )
        lines.append(f"| {f['label']} | {f['raw']:,.0f} | {f['rmq']:,.0f} | "
                     f"{f['ratio']:.2f}x | {target} |")  # fmt: skip
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="N=1,000, one run")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    if args.quick:
        args.count, args.runs = 1_000, 1
    with EmbeddedServer() as server:
        doc = measure(server.url, args.count, args.runs)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print("\n".join(render(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
