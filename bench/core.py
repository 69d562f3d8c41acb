"""rmq against raw redis-py doing the same Redis work: one process, one loop, one private server.

Every figure is measured on a fresh namespace/stream (FLUSHALL before each) with the same payload,
a ~100-byte JSON object `{"i": n, "t": send time, "pad": 60 x "x"}`, and the same count N.
Each rmq figure is shown with its ratio to the matching raw redis-py figure (rmq / raw).

    .venv/bin/python bench/core.py            # full run: N=50,000, 3 runs per figure, median
    .venv/bin/python bench/core.py --quick    # smoke run: N=2,000, 1 run, a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import redis
from redis.asyncio import Redis
from redis.utils import HIREDIS_AVAILABLE

import rmq
from rmq.embedded import EmbeddedServer
from rmq.keys import NamespaceKeys

TOPIC = "bench"
PAD = "x" * 60
BATCH = 100  # raw pipeline depth, rmq concurrent senders, rmq send_batch size, XREADGROUP COUNT
Value = float | dict[str, float]


def payload(i: int) -> dict[str, Any]:
    return {"i": i, "t": time.time(), "pad": PAD}


async def read_group(r: Redis, block: int | None = None) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XREADGROUP COUNT 100 on the raw stream as group g, consumer c: the entries, maybe none."""
    reply: Any = await r.xreadgroup("g", "c", {"raw": ">"}, count=BATCH, block=block)
    return reply[0][1] if reply else []


def chunks(n: int) -> list[range]:
    return [range(s, min(s + BATCH, n)) for s in range(0, n, BATCH)]


class Bench:
    """The measurements. Each returns msgs/s, ms percentiles or bytes per message."""

    def __init__(self, args: argparse.Namespace, url: str) -> None:
        self.args = args
        self.url = url
        self.n: int = args.count
        self.mem: int = args.mem_count
        self.seq = 0
        self.admin = self.raw()

    def raw(self) -> Redis:
        return Redis.from_url(self.url, protocol=2)  # hiredis parser when installed

    def settings(self, **changes: Any) -> rmq.Settings:
        """Library defaults (not RMQ_* env), a fresh namespace, plus `changes`."""
        self.seq += 1
        return rmq.Settings(redis_url=self.url, namespace=f"b{self.seq}", **changes)

    async def used_memory(self) -> int:
        return int((await self.admin.info("memory"))["used_memory"])

    async def raw_fill(self, r: Redis, stream: str, n: int) -> None:
        for part in chunks(n):
            pipe = r.pipeline(transaction=False)
            for i in part:
                pipe.xadd(stream, {"d": orjson.dumps(payload(i))})
            await pipe.execute()

    async def rmq_fill(self, app: rmq.App, n: int) -> None:
        for part in chunks(n):
            await app.send_batch(TOPIC, [payload(i) for i in part])

    # ------------------------------------------------------------------ produce

    async def raw_send_one(self) -> float:
        async with self.raw() as r:
            await r.ping()
            t0 = time.perf_counter()
            for i in range(self.n):
                await r.xadd("raw", {"d": orjson.dumps(payload(i))})
            return self.n / (time.perf_counter() - t0)

    async def raw_pipelined(self) -> float:
        async with self.raw() as r:
            await r.ping()
            t0 = time.perf_counter()
            await self.raw_fill(r, "raw", self.n)
            return self.n / (time.perf_counter() - t0)

    async def rmq_send_one(self) -> float:
        async with rmq.App(self.settings()) as app:
            t0 = time.perf_counter()
            for i in range(self.n):
                await app.send(TOPIC, payload(i))
            return self.n / (time.perf_counter() - t0)

    async def rmq_concurrent(self) -> float:
        async def sender(app: rmq.App, ids: range) -> None:
            for i in ids:
                await app.send(TOPIC, payload(i))

        async with rmq.App(self.settings()) as app:
            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for k in range(BATCH):
                    tg.create_task(sender(app, range(k, self.n, BATCH)))
            return self.n / (time.perf_counter() - t0)

    async def rmq_batch(self) -> float:
        async with rmq.App(self.settings()) as app:
            t0 = time.perf_counter()
            await self.rmq_fill(app, self.n)
            return self.n / (time.perf_counter() - t0)

    # ------------------------------------------------------------------ consume

    async def raw_consume(self) -> float:
        n, r = self.n, self.raw()
        await self.raw_fill(r, "raw", n)
        await r.xgroup_create("raw", "g", id="0")
        seen, got, dups, first = bytearray(n), 0, 0, 0.0
        while got < n:
            entries = await read_group(r)
            if not entries:
                raise RuntimeError(f"raw consume: stream empty after {got} of {n}")
            ids: list[bytes] = []
            for entry_id, fields in entries:
                i = orjson.loads(fields[b"d"])["i"]
                if seen[i]:
                    dups += 1
                else:
                    seen[i] = 1
                    got += 1
                    if got == 1:
                        first = time.perf_counter()
                ids.append(entry_id)
            await r.xack("raw", "g", *ids)
        last = time.perf_counter()
        await r.aclose()
        if dups:
            raise RuntimeError(f"raw consume saw {dups} duplicates")
        return (n - 1) / (last - first)

    async def rmq_consume(self) -> float:
        n, settings = self.n, self.settings()
        async with rmq.App(settings) as producer:
            await self.rmq_fill(producer, n)
        app = rmq.App(settings)
        seen, got, dups, first, last = bytearray(n), 0, 0, 0.0, 0.0

        @app.consumer(TOPIC, group="g", start="first")
        async def handle(msg: rmq.Message) -> None:
            nonlocal got, dups, first, last
            i = msg.body["i"]
            if seen[i]:
                dups += 1
                return
            seen[i] = 1
            got += 1
            if got == 1:
                first = time.perf_counter()
            elif got == n:
                last = time.perf_counter()
                app.stop()

        with anyio.move_on_after(max(60.0, n / 500)):
            await app.run(handle_signals=False)
        if got < n or dups:
            raise RuntimeError(f"rmq consume: {got} of {n} messages seen, {dups} duplicates")
        keys = NamespaceKeys(settings.namespace)
        queues = [keys.queue(TOPIC, q).stream for q in range(settings.default_queues)]
        pending = sum([(await self.admin.xpending(s, "g"))["pending"] for s in queues])
        if pending:
            raise RuntimeError(f"rmq consume: {pending} entries still pending after stop")
        return (n - 1) / (last - first)

    # ------------------------------------------------------------------ latency

    async def offer(self, send: Callable[[dict[str, Any]], Awaitable[Any]], total: int) -> float:
        """Send `total` messages one awaited send at a time, paced at --rate; achieved rate."""
        interval = 1.0 / self.args.rate
        t0 = time.perf_counter()
        for i in range(total):
            delay = t0 + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await send(payload(i))  # "t" is stamped right before the send
        return total / (time.perf_counter() - t0)

    def latency(self, lat: list[float], sent_rate: float) -> dict[str, float]:
        lat.sort()
        ms = [x * 1000 for x in lat]
        return {
            "p50": ms[len(ms) // 2], "p99": ms[int(len(ms) * 0.99)], "max": ms[-1],
            "sent_rate": sent_rate,
        }  # fmt: skip

    async def raw_latency(self) -> dict[str, float]:
        total = int(self.args.rate * self.args.duration)
        sender, reader = self.raw(), self.raw()
        await reader.xgroup_create("raw", "g", id="$", mkstream=True)
        lat: list[float] = []

        async def consume() -> None:
            while len(lat) < total:
                ids: list[bytes] = []
                for entry_id, fields in await read_group(reader, block=1000):
                    lat.append(time.time() - orjson.loads(fields[b"d"])["t"])
                    ids.append(entry_id)
                if ids:
                    await reader.xack("raw", "g", *ids)

        task = asyncio.create_task(consume())
        await sender.ping()
        rate = await self.offer(lambda p: sender.xadd("raw", {"d": orjson.dumps(p)}), total)
        await asyncio.wait_for(task, 30)
        await sender.aclose()
        await reader.aclose()
        return self.latency(lat, rate)

    async def rmq_latency(self) -> dict[str, float]:
        total = int(self.args.rate * self.args.duration)
        app = rmq.App(self.settings())
        lat: list[float] = []
        done = anyio.Event()

        @app.consumer(TOPIC, group="g", start="first")
        async def handle(msg: rmq.Message) -> None:
            lat.append(time.time() - msg.body["t"])
            if len(lat) >= total:
                done.set()

        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(app.run, handle_signals=False))
            rate = await self.offer(lambda p: app.send(TOPIC, p), total)
            with anyio.fail_after(30):
                await done.wait()
            app.stop()
        return self.latency(lat, rate)

    # ------------------------------------------------------------------ memory

    async def raw_memory(self) -> float:
        async with self.raw() as r:
            before = await self.used_memory()
            await self.raw_fill(r, "raw", self.mem)
            return (await self.used_memory() - before) / self.mem

    async def rmq_memory(self, **changes: Any) -> tuple[int, int, str]:
        settings = self.settings(**changes)
        async with rmq.App(settings) as app:
            await app.context.topics.ensure(TOPIC)
            before = await self.used_memory()
            await self.rmq_fill(app, self.mem)
            return before, await self.used_memory(), settings.namespace

    async def rmq_memory_default(self) -> float:
        before, after, _ = await self.rmq_memory()
        return (after - before) / self.mem


# (key, what it measures); raw and rmq alternate within each repetition, so noise hits both.
MEASUREMENTS = [
    ("raw_send_one", "raw: one awaited XADD at a time"),
    ("rmq_send_one", "rmq: await app.send() one at a time"),
    ("raw_pipelined", f"raw: XADD pipelined by {BATCH} (transaction=False)"),
    ("rmq_concurrent", f"rmq: {BATCH} tasks each awaiting app.send() in a loop"),
    ("rmq_batch", f"rmq: app.send_batch() of {BATCH}"),
    ("raw_consume", f"raw: XREADGROUP COUNT {BATCH} + one XACK per batch, orjson per body"),
    ("rmq_consume", "rmq: one @app.consumer no-op async handler, app.run() in-process"),
    ("raw_latency", "raw: XADD -> XREADGROUP BLOCK in another task"),
    ("rmq_latency", "rmq: app.send -> handler"),
    ("raw_memory", "raw: used_memory delta / messages, XADD {d: body}"),
    ("rmq_memory_default", "rmq: used_memory delta / messages, send_batch, default settings"),
]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def field(results: dict[str, list[Value]], key: str, sub: str | None) -> dict[str, float] | None:
    values = results.get(key)
    if not values:
        return None
    return summary([v[sub or ""] if isinstance(v, dict) else v for v in values])


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def table(results: dict[str, list[Value]], args: argparse.Namespace) -> list[str]:
    rate = f"@{args.rate:,.0f}/s"
    rows = [
        ("produce, one awaited send at a time (msgs/s)", "raw_send_one", "rmq_send_one", None),
        (f"produce, {BATCH} in flight: raw pipeline vs rmq {BATCH} concurrent senders (msgs/s)",
         "raw_pipelined", "rmq_concurrent", None),
        (f"produce, batches of {BATCH}: raw pipeline vs rmq send_batch (msgs/s)",
         "raw_pipelined", "rmq_batch", None),
        ("consume + ack a backlog, 1 process (msgs/s)", "raw_consume", "rmq_consume", None),
        (f"e2e latency p50 {rate} (ms)", "raw_latency", "rmq_latency", "p50"),
        (f"e2e latency p99 {rate} (ms)", "raw_latency", "rmq_latency", "p99"),
        (f"e2e latency max {rate} (ms)", "raw_latency", "rmq_latency", "max"),
        ("achieved offered rate in the latency test (msgs/s)", "raw_latency", "rmq_latency",
         "sent_rate"),
        ("Redis memory per queued message (bytes)", "raw_memory", "rmq_memory_default", None),
    ]  # fmt: skip
    out = [
        "| measurement | raw redis-py | rmq | rmq / raw | spread raw | spread rmq |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, raw_key, rmq_key, sub in rows:
        raw = field(results, raw_key, None if raw_key == "raw_memory" else sub)
        mine = field(results, rmq_key, sub)
        if raw is None or mine is None:
            continue
        ratio = mine["median"] / raw["median"] if raw["median"] else float("nan")
        spread = [f"{fmt(s['min'])}-{fmt(s['max'])}" for s in (raw, mine)]
        out.append(
            f"| {label} | {fmt(raw['median'])} | {fmt(mine['median'])} | {ratio:.2f}x "
            f"| {spread[0]} | {spread[1]} |"
        )
    return out


async def run_all(bench: Bench, args: argparse.Namespace) -> dict[str, list[Value]]:
    results: dict[str, list[Value]] = {}
    for rep in range(args.runs):
        for key, _ in MEASUREMENTS:
            await bench.admin.flushall()
            value: Value = await getattr(bench, key)()
            results.setdefault(key, []).append(value)
            shown = value if isinstance(value, dict) else fmt(value)
            print(f"  run {rep + 1}/{args.runs} {key:<20} {shown}", flush=True)
    return results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=50_000, help="messages per throughput figure N")
    p.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    p.add_argument("--rate", type=float, default=2000.0, help="offered msgs/s, latency test")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of the latency test")
    p.add_argument("--mem-count", type=int, default=100_000, help="messages for memory figures")
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop, not uvloop")
    p.add_argument(
        "--quick", action="store_true",
        help="smoke run: N=2,000, 1 run, 1 s latency, 10,000 memory msgs;\n"
        "writes core-quick.{json,md} so the full results are kept",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output dir")
    args = p.parse_args()
    if args.quick:
        args.count, args.runs, args.duration, args.mem_count = 2000, 1, 1.0, 10_000
    return args


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "rmq"], capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted rmq/ changes" if dirty.stdout.strip() else "")


def main() -> None:
    args = parse_args()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    uvloop_version = "no"
    if not args.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
            uvloop_version = f"yes ({getattr(uvloop, '__version__', '?')})"
        except ImportError:
            pass
    started, load_start = time.monotonic(), os.getloadavg()[0]
    with EmbeddedServer() as server:  # free loopback port, --save '' --appendonly no
        bench = Bench(args, server.url)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            info: dict[str, Any] = runner.run(bench.admin.info("server"))  # type: ignore[arg-type]
            version = info["redis_version"]
            print(f"{server.name} {version} on port {server.port}; N={args.count:,}", flush=True)
            results = runner.run(run_all(bench, args))
            runner.run(bench.admin.aclose())
    machine = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(),
        "python": platform.python_version(), "redis-py": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE, "server": f"{server.name} {version}",
        "uvloop": uvloop_version, "rmq": f"{rmq.__version__} ({git_commit()})",
        "platform": platform.platform(),
        "load average (1 min) start/end": f"{load_start:.2f}/{os.getloadavg()[0]:.2f}",
        "elapsed": f"{time.monotonic() - started:.0f} s",
    }  # fmt: skip
    rows = table(results, args)
    notes = [
        f"N={args.count:,} per throughput figure, {args.runs} run(s) each, median shown, spread = "
        f"min-max; latency: {args.rate:,.0f} msgs/s offered for {args.duration:g} s, "
        "one awaited send at a time on a schedule ('t' stamped just before it), consumer in the "
        f"same process and loop; memory: {args.mem_count:,} messages.",
        "Ratio = rmq / raw: below 1 is slower for throughput; above 1 is worse for latency and "
        "memory. rmq topics have 4 queues (default); raw uses one stream.",
        "Consume rate = (N-1) / (time of N-th handled - time of first handled), duplicates checked;"
        " rmq prefilled by its own send_batch, group created with start='first'.",
        "rmq's memory figure includes its send dedup records (one small key per producer session "
        "and queue) and the 6 fixed fields per entry (msg_id, tag, keys, properties, flags, body).",
        "Shared 2-core machine: other processes (test suites and their servers) may have run at "
        "the same time (see the load average); compare ratios, not absolute rates, across runs.",
    ]
    for key in ("raw_latency", "rmq_latency"):
        sent = field(results, key, "sent_rate")
        if sent and sent["median"] < 0.95 * args.rate:
            notes.append(
                f"{key}: the sender reached only {sent['median']:,.0f} of {args.rate:,.0f} msgs/s "
                "(sender + consumer saturate the process), so its latencies are at that rate."
            )
    machine_line = ", ".join(f"{k}: {v}" for k, v in machine.items())
    print("\n" + "\n".join(rows) + "\n\n" + machine_line + "\n" + "\n".join(notes))
    args.out.mkdir(parents=True, exist_ok=True)
    name = "core" + "-quick" * args.quick + "-asyncio" * args.no_uvloop
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    what = dict(MEASUREMENTS)
    doc = {"machine": machine, "config": config, "notes": notes, "what": what, "results": results}
    (args.out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    flags = " --quick" * args.quick + " --no-uvloop" * args.no_uvloop
    md = [f"# rmq vs raw redis-py ({machine['date']})", "", *rows, "", f"Machine: {machine_line}."]
    md += ["", *[f"- {n}" for n in notes], "", "Measured:", ""]
    md += [f"- `{k}`: {v}" for k, v in what.items()]
    md += ["", f"Command: `.venv/bin/python bench/core.py{flags}` (all options in {name}.json)"]
    (args.out / f"{name}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out / name}.json and .md ({machine['elapsed']})")


if __name__ == "__main__":
    main()
