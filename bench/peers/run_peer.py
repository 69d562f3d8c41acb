"""Measure one framework (a `<name>_peer.py` driver) the way peer-bench.md did; print JSON.

Run with the python of the venv that holds the framework, from anywhere:

    bench/.venv-peers/bin/python bench/peers/run_peer.py taskiq --url redis://127.0.0.1:PORT/0

Phases, on a private Redis the caller owns (FLUSHALL first):

1. enqueue: `--count` messages, one awaited send at a time (a sync call for celery and dramatiq),
   no worker running: msgs/s.
2. process: start ONE worker command (`--processes` where the framework has it); every id
   0..N-1 must be recorded by the no-op handler (missing ids fail the run, duplicates are
   counted); rate = (N-1) / (last completion - first completion).
3. e2e: with the worker warm and idle, offer each `--rates` msgs/s open-loop for `--duration` s
   (one send per message, send time in the body): latency = handler time - send time.
4. delay (drivers with `send_delayed`, with `--delay`): delayed messages at `--delay-rate` for
   `--delay-duration` s, due `--delay` s later: lateness = handler time - due time.
5. bulk (drivers with `send_bulk`, unless `--no-bulk`): `--count` messages in chunks of 100 on
   an empty Redis, no worker: msgs/s.

Redis commands per message come from INFO commandstats deltas (scripts' inner calls included).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import redis
from common import OUT_ENV, URL_ENV, Reader, payload

HERE = Path(__file__).resolve().parent
E2E_BASE = 10_000_000  # ids of the e2e phases: E2E_BASE * (k + 1) + n
DELAY_BASE = 90_000_000
STALL_SECONDS = 30.0
T = TypeVar("T")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    return {
        "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99), "max_ms": max(ms),
        "avg_ms": sum(ms) / len(ms),
    }  # fmt: skip


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        os.environ[URL_ENV] = args.url
        self.driver = importlib.import_module(f"{args.peer}_peer")
        self.sync = bool(getattr(self.driver, "SYNC", False))
        self.r = redis.Redis.from_url(args.url)
        self.out = Path(tempfile.mkdtemp(prefix=f"bench-{args.peer}-"))
        self.reader = Reader(self.out)
        self.seen: dict[int, tuple[float, float]] = {}
        self.dups = 0
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = self.out / "worker.log"
        self.runner: asyncio.Runner | None = None
        if not self.sync:
            try:
                import uvloop

                self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
            except ImportError:
                self.runner = asyncio.Runner()
        self.client: Any = None

    # ------------------------------------------------------------------ plumbing

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a driver call: awaited on the runner's loop, or directly for sync drivers."""
        result = fn(*args)
        if self.runner is not None:
            return self.runner.run(result)
        return result

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.runner is not None
        return self.runner.run(coro)

    def commands(self) -> dict[str, int]:
        stats: dict[str, Any] = self.r.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        for own in ("info", "config|resetstat", "config"):
            calls.pop(own, None)
        return calls

    def reset_stats(self) -> None:
        self.r.config_resetstat()

    def per_message(self, n: int) -> dict[str, Any]:
        calls = self.commands()
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:4]
        return {
            "cmds_per_msg": round(sum(calls.values()) / n, 2),
            "top": {k: round(v / n, 2) for k, v in top},
        }

    def start_worker(self) -> None:
        env = {**os.environ, URL_ENV: self.args.url, OUT_ENV: str(self.out)}
        env["PYTHONPATH"] = str(HERE)
        env.update(getattr(self.driver, "worker_env", dict)())
        command = self.driver.worker_command(sys.executable, self.args.processes)
        self.worker = subprocess.Popen(
            command, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def stop_worker(self) -> int | None:
        proc, self.worker = self.worker, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the worker's own process group (children)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def collect(self, ids: range, timeout: float) -> list[tuple[int, float, float]]:
        """Wait until every id in `ids` was recorded (or progress stalls); their records."""
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        have = sum(1 for i in ids if i in self.seen)
        while have < len(ids):
            new = 0
            for i, t, d in self.reader.new():
                if i in self.seen:
                    self.dups += 1
                    continue
                self.seen[i] = (t, d)
                if i in ids:
                    new += 1
            have += new
            now = time.monotonic()
            if new:
                last_progress = now
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(
                    f"the worker exited ({self.worker.returncode}) after {have} of {len(ids)}"
                    f" messages:\n{self.log_tail()}"
                )
            if now - last_progress > STALL_SECONDS or now > deadline:
                break
            time.sleep(0.05)
        return [(i, *self.seen[i]) for i in ids if i in self.seen]

    # ------------------------------------------------------------------ phases

    def enqueue(self, n: int) -> float:
        send = self.client.send
        if self.sync:
            t0 = time.perf_counter()
            for i in range(n):
                send(payload(i))
            return n / (time.perf_counter() - t0)

        async def loop() -> float:
            t0 = time.perf_counter()
            for i in range(n):
                await send(payload(i))
            return n / (time.perf_counter() - t0)

        return self.run(loop())

    def offer(
        self, base: int, rate: float, duration: float, make: Callable[[int], dict[str, Any]],
        send: Callable[[dict[str, Any]], Any],
    ) -> float:  # fmt: skip
        """Open-loop: message k is due at t0 + k / rate; returns the achieved rate."""
        total = max(1, int(rate * duration))
        if self.sync:
            t0 = time.perf_counter()
            for k in range(total):
                wait = t0 + k / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                send(make(base + k))
            return total / (time.perf_counter() - t0)

        async def loop() -> float:
            t0 = time.perf_counter()
            for k in range(total):
                wait = t0 + k / rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                await send(make(base + k))
            return total / (time.perf_counter() - t0)

        return self.run(loop())

    def measure(self) -> dict[str, Any]:
        args, n = self.args, self.args.count
        result: dict[str, Any] = {"name": self.driver.NAME, "notes": self.driver.NOTES}
        result["versions"] = {p: _version(p) for p in self.driver.PACKAGES}
        result["python"] = platform.python_version()
        result["count"] = n
        result["processes"] = args.processes
        self.r.flushall()
        self.client = self.call(self.driver.connect)
        self.reset_stats()
        result["enqueue_rate"] = self.enqueue(n)
        result["enqueue_redis"] = self.per_message(n)
        _progress(args, f"enqueue {result['enqueue_rate']:,.0f} msgs/s")

        self.reset_stats()
        started = time.monotonic()
        self.start_worker()
        records = self.collect(range(n), timeout=max(120.0, n / 50))
        if len(records) < n:
            raise RuntimeError(
                f"process: only {len(records)} of {n} messages were handled "
                f"(no progress for {STALL_SECONDS:g} s)\n{self.log_tail()}"
            )
        done = [d for _, _, d in records]
        result["process_rate"] = (n - 1) / (max(done) - min(done))
        result["process_duplicates"] = self.dups
        result["process_redis"] = self.per_message(n)
        result["worker_start_to_first_seconds"] = min(done) - (
            time.time() - (time.monotonic() - started)
        )
        _progress(args, f"process {result['process_rate']:,.0f} msgs/s")

        result["e2e"] = {}
        for k, rate in enumerate(args.rates):
            base = E2E_BASE * (k + 1)
            total = max(1, int(rate * args.duration))
            achieved = self.offer(base, rate, args.duration, payload, self.client.send)
            got = self.collect(range(base, base + total), timeout=30 + total / 100)
            ms = [(d - t) * 1000 for _, t, d in got]
            # > 1 s: the worker fell behind the offered rate, the figures are queueing delay
            drain = max((d for _, _, d in got), default=0.0) - max(
                (t for _, t, _ in got), default=0.0
            )
            result["e2e"][f"{rate:g}"] = {
                "offered": rate, "achieved": achieved, "messages": total, "seen": len(got),
                "drain_seconds": drain, **latency_stats(ms),
            }  # fmt: skip
            _progress(args, f"e2e @{rate:g}/s: {result['e2e'][f'{rate:g}']}")

        send_delayed = getattr(self.client, "send_delayed", None)
        if args.delay and send_delayed is not None:
            delay = args.delay
            total = max(1, int(args.delay_rate * args.delay_duration))

            def due(i: int) -> dict[str, Any]:
                return payload(i, time.time() + delay)

            achieved = self.offer(
                DELAY_BASE, args.delay_rate, args.delay_duration, due,
                lambda p: send_delayed(p, delay),
            )  # fmt: skip
            got = self.collect(range(DELAY_BASE, DELAY_BASE + total), timeout=delay + 60)
            ms = [(d - t) * 1000 for _, t, d in got]
            result["delay"] = {
                "delay_seconds": delay, "offered": args.delay_rate, "achieved": achieved,
                "messages": total, "seen": len(got), "min_ms": min(ms, default=0.0),
                **latency_stats(ms),
            }  # fmt: skip
            _progress(args, f"delay: {result['delay']}")
        result["worker_exit"] = self.stop_worker()

        send_bulk = getattr(self.client, "send_bulk", None)
        if send_bulk is not None and not args.no_bulk:
            self.r.flushall()
            chunks = [[payload(i) for i in range(s, min(n, s + 100))] for s in range(0, n, 100)]
            t0 = time.perf_counter()
            for chunk in chunks:
                self.call(send_bulk, chunk)
            result["bulk_rate"] = n / (time.perf_counter() - t0)
            _progress(args, f"bulk {result['bulk_rate']:,.0f} msgs/s")
        return result

    def close(self) -> None:
        self.stop_worker()
        if self.client is not None:
            try:
                self.call(self.client.close)
            except Exception:
                pass
        if self.runner is not None:
            self.runner.close()
        self.r.close()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _progress(args: argparse.Namespace, text: str) -> None:
    print(f"    [{args.peer}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("peer", help="driver name: <peer>_peer.py in this directory")
    p.add_argument("--url", required=True, help="Redis URL (a private server: it is flushed)")
    p.add_argument("--count", type=int, default=20_000, help="messages N")
    p.add_argument("--processes", type=int, default=1, help="worker processes")
    p.add_argument("--rates", default="500", help="offered msgs/s for e2e, comma-separated")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per offered rate")
    p.add_argument("--delay", type=float, default=0.0, help="delay phase: seconds (0: none)")
    p.add_argument("--delay-rate", type=float, default=500.0)
    p.add_argument("--delay-duration", type=float, default=5.0)
    p.add_argument("--no-bulk", action="store_true", help="skip the bulk enqueue phase")
    p.add_argument("--result", type=Path, help="write the JSON here (else stdout)")
    args = p.parse_args(argv)
    args.rates = [float(x) for x in str(args.rates).split(",") if x.strip()]
    return args


def main() -> int:
    args = parse_args()
    doc: dict[str, Any]
    code = 0
    harness: Harness | None = None
    try:
        harness = Harness(args)
        doc = harness.measure()
    except Exception as exc:
        code = 1
        doc = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        if harness is not None:
            doc["worker_log"] = harness.log_tail(30)
    finally:
        if harness is not None:
            harness.close()
    text = json.dumps(doc, indent=2)
    if args.result:
        args.result.write_text(text + "\n")
    else:
        print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
