"""Transactional sends per second, as a ratio to plain sends in the same run, on a private server.

A transactional send is `producer.send_in_transaction(topic, body, execute=noop)`: the `prepare`
script (half message), a local transaction that returns COMMIT at once, then the `commit` script
(append to the queue): two round trips where a plain `producer.send` has one. Both sides use one
producer of the same app, the same ~100-byte JSON body and the library's default settings (a
topic of 4 queues). Figures:

- one awaited send at a time (round-trip bound);
- 100 concurrent senders, each awaiting sends in a loop (both sides share round trips between
  concurrent callers: plain sends coalesce into one `send` call per queue, transactional ones
  pipeline their prepares and commits);
- the same with a plain `def` local transaction (it runs in a worker thread).

Each figure runs `--runs` times, plain and transactional interleaved; the median is shown. The
server is `rmq.embedded.EmbeddedServer` (`--save '' --appendonly no`) on a free port.

    .venv/bin/python bench/transactions.py            # N=20,000 per figure, 3 runs
    .venv/bin/python bench/transactions.py --quick    # N=2,000, 1 run, a few seconds
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import rmq
from rmq.embedded import EmbeddedServer

TOPIC = "bench-tx"
PAD = "x" * 60
CONCURRENCY = 100


def body(i: int) -> dict[str, Any]:
    return {"i": i, "t": time.time(), "pad": PAD}


async def noop_async(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
    return rmq.TransactionState.COMMIT


def noop_sync(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
    return rmq.TransactionState.COMMIT


Send = Callable[[rmq.Producer, int], Awaitable[object]]


async def plain(producer: rmq.Producer, i: int) -> object:
    return await producer.send(TOPIC, body(i))


async def transactional(producer: rmq.Producer, i: int) -> object:
    result = await producer.send_in_transaction(TOPIC, body(i), execute=noop_async)
    assert result.offset, result
    return result


async def transactional_sync(producer: rmq.Producer, i: int) -> object:
    result = await producer.send_in_transaction(TOPIC, body(i), execute=noop_sync)
    assert result.offset, result
    return result


async def measure(url: str, run: int, send: Send, n: int, concurrency: int) -> float:
    """Messages per second for `n` sends by `concurrency` senders, on a fresh namespace."""
    app = rmq.App(redis_url=url, namespace=f"tx{run}")
    producer = app.producer(group="bench")
    async with app:
        await send(producer, -1)  # warm-up: the topic exists, the connection is open
        counter = iter(range(n))

        async def sender() -> None:
            for i in counter:
                await send(producer, i)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(sender)
        elapsed = time.perf_counter() - started
    return n / elapsed


FIGURES: list[tuple[str, str, Send, Send, int]] = [
    ("one", "one awaited send at a time", plain, transactional, 1),
    ("concurrent", f"{CONCURRENCY} concurrent senders", plain, transactional, CONCURRENCY),
    (
        "concurrent_sync",
        f"{CONCURRENCY} concurrent senders, sync local transaction (worker thread)",
        plain, transactional_sync, CONCURRENCY,
    ),
]  # fmt: skip


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    run = 0
    with EmbeddedServer() as server:
        for key, label, base, tx, concurrency in FIGURES:
            n = args.count if concurrency > 1 else max(200, args.count // 10)
            rates: dict[str, list[float]] = {"plain": [], "tx": []}
            for _ in range(args.runs):
                for side, send in (("plain", base), ("tx", tx)):
                    run += 1
                    rates[side].append(await measure(server.url, run, send, n, concurrency))
            plain_rate = statistics.median(rates["plain"])
            tx_rate = statistics.median(rates["tx"])
            results[key] = {
                "label": label, "messages": n, "plain": plain_rate, "tx": tx_rate,
                "ratio": tx_rate / plain_rate, "runs": rates,
            }  # fmt: skip
            print(f"{label}: plain {plain_rate:,.0f}/s, transactional {tx_rate:,.0f}/s, "
                  f"ratio {tx_rate / plain_rate:.2f}", flush=True)  # fmt: skip
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"# rmq transactional sends ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| figure | plain send (msgs/s) | send_in_transaction (msgs/s) | transactional / plain |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['label']} | {r['plain']:,.0f} | {r['tx']:,.0f} | {r['ratio']:.2f}x |"
        for r in results.values()
    ]
    lines += [
        "",
        f"N={args.count:,} per concurrent figure (one-at-a-time: N/10), {args.runs} run(s), "
        f"median. Machine: {os.cpu_count()} cores, Python {platform.python_version()}, load "
        f"average at the end {os.getloadavg()[0]:.2f}. A transactional send = prepare + no-op "
        "local transaction + commit.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20_000, help="sends per concurrent figure")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median shown)")
    parser.add_argument("--quick", action="store_true", help="N=2,000, 1 run")
    parser.add_argument("--out", type=Path, help="also write transactions[-quick].{json,md} here")
    args = parser.parse_args()
    if args.quick:
        args.count, args.runs = 2_000, 1
    runner: Callable[..., Any]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    results = runner(main(args))
    text = report(results, args)
    print("\n" + text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "transactions-quick" if args.quick else "transactions"
        (args.out / f"{name}.json").write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, **results}, indent=2)
        )
        (args.out / f"{name}.md").write_text(text + "\n")
