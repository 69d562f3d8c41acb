"""Delayed-message lateness and retry-path throughput of rmq, on a private redis-server.

1. Lateness: send `--rate` delayed messages per second for `--duration` seconds, each due
   `--delay` seconds after it was sent (the due time travels in the body); one worker in the same
   process consumes them; lateness = time handled - due time. Reports p50, p99, max.
2. Retry path: prefill `--retry-count` messages; the handler fails each once (`retry=0`, so the
   retry is due at once) and succeeds on the retry; reports messages failed-and-retried per second.

    python bench/delay.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

import rmq
from rmq.embedded import EmbeddedServer

TOPIC = "bench-delay"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def lateness(url: str, rate: float, duration: float, delay: float) -> dict[str, float]:
    app = rmq.App(redis_url=url, namespace=f"lat{os.getpid()}")
    late: list[float] = []
    total = int(rate * duration)
    done = asyncio.Event()

    @app.consumer(TOPIC, group="g", concurrency=50)
    async def handle(msg: rmq.Message) -> None:
        late.append(time.time() - msg.body["due"])
        if len(late) >= total:
            done.set()

    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: app.run(handle_signals=False, task_status=task_status))
        start = time.perf_counter()
        for n in range(total):
            wait = start + n / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            app.send_oneway(TOPIC, {"due": time.time() + delay, "n": n}, delay=delay)
        await app.flush()
        with anyio.fail_after(delay + 60):
            await done.wait()
        app.stop()
    ms = [x * 1000 for x in late]
    return {
        "messages": len(ms), "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms), "min_ms": min(ms), "mean_ms": statistics.fmean(ms),
    }  # fmt: skip


async def retry_throughput(url: str, count: int) -> dict[str, float]:
    app = rmq.App(redis_url=url, namespace=f"rt{os.getpid()}")
    retried = 0
    done = asyncio.Event()
    first_failure: float | None = None

    @app.consumer(TOPIC, group="g", start="first", retry=0, concurrency=50)
    async def handle(msg: rmq.Message) -> None:
        nonlocal retried, first_failure
        if msg.reconsume_times == 0:
            first_failure = first_failure or time.perf_counter()
            raise rmq.Retry()
        retried += 1
        if retried >= count:
            done.set()

    async with app:
        for start in range(0, count, 500):
            await app.send_batch(TOPIC, list(range(start, min(count, start + 500))))
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: app.run(handle_signals=False, task_status=task_status))
        with anyio.fail_after(300):
            await done.wait()
        elapsed = time.perf_counter() - (first_failure or 0)
        app.stop()
    return {"messages": count, "seconds": elapsed, "failed_and_retried_per_s": count / elapsed}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with EmbeddedServer() as server:
        results: dict[str, Any] = {}
        results["lateness"] = await lateness(server.url, args.rate, args.duration, args.delay)
        print("lateness:", json.dumps(results["lateness"]), flush=True)
        results["retry"] = await retry_throughput(server.url, args.retry_count)
        print("retry path:", json.dumps(results["retry"]), flush=True)
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lat, retry = results["lateness"], results["retry"]
    return "\n".join([
        f"# rmq delayed messages and retries ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| lateness p50 ({args.rate:,.0f} msgs/s for {args.duration:g} s, delay {args.delay:g} s)"
        f" | {lat['p50_ms']:.1f} ms |",
        f"| lateness p99 | {lat['p99_ms']:.1f} ms |",
        f"| lateness max | {lat['max_ms']:.1f} ms |",
        f"| earliest (negative = early) | {lat['min_ms']:.1f} ms |",
        "| retry path, messages failed and retried per second "
        f"| {retry['failed_and_retried_per_s']:,.0f} |",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average at the end {os.getloadavg()[0]:.2f}. One worker process, in the sender's "
        "process; lateness = handler time - due time (same clock).",
    ])  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="delayed messages per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    parser.add_argument("--delay", type=float, default=1.0, help="delay of each message (s)")
    parser.add_argument("--retry-count", type=int, default=20_000, help="messages failed once")
    parser.add_argument("--quick", action="store_true", help="5 s of sending, 2,000 retries")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.retry_count = 5.0, 2000
    runner: Callable[..., Any]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    results = runner(main(args))
    text = report(results, args)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "delay-quick" if args.quick else "delay"
    (args.out / f"{name}.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, **results}, indent=2)
    )
    (args.out / f"{name}.md").write_text(text + "\n")
