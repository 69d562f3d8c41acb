"""The cases of bench/scale.py. Each takes the run's `Env` and returns rows (plain dicts).

A row holds what was measured, or a `status` saying what did not happen in time ("did not
start within 15 s"): every wait is bounded, so a case that cannot finish reports instead of
hanging. Rates are (n-1) / (last - first) between handled messages, as in bench/core.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
from scale_env import (
    QUEUES,
    Env,
    Handled,
    Row,
    body,
    capture,
    create_topics,
    fill,
    percentile,
    raw_fill,
    running,
)
from scale_probe import (
    RecordFile,
    ServerStats,
    WorkerProcess,
    app_client_prefix,
    connections,
    proc_cpu,
    process_client_prefix,
    queue_streams,
    top_commands,
)

import rmq

# ---------------------------------------------------------------------- 1. width / start-up


async def width(env: Env) -> list[Row]:
    rows: list[Row] = []
    for topics in env.args.topics:
        rows.append(await width_raw(env, topics))
        rows += [await width_rmq(env, topics, variant) for variant in ("same", "distinct")]
    return rows


async def width_rmq(env: Env, n_topics: int, variant: str) -> Row:
    a = env.args
    await env.flushall()
    settings = env.settings()
    topics = [f"t{i}" for i in range(n_topics)]
    row: Row = {"system": "rmq", "topics": n_topics, "groups": variant}
    with capture(env, row):
        await create_topics(settings, topics)
        app = rmq.App(settings)
        handled = Handled(n_topics)

        async def handle(msg: rmq.Message) -> None:
            handled.hit()

        for i, topic in enumerate(topics):
            app.consumer(topic, group="g" if variant == "same" else f"g{i}")(handle)
        async with env.redis() as r, running(app, a.start_timeout) as run:
            row["connections"] = await connections(r, app_client_prefix(app.name))
            row["server_clients"] = len(await r.client_list()) - 1
            if run.seconds is None:
                row["status"] = run.why
                return row
            row["started_s"] = run.seconds
            async with rmq.App(settings) as producer:
                t0 = time.perf_counter()
                for part in range(0, n_topics, 100):
                    sends = [producer.send(t, body(0)) for t in topics[part : part + 100]]
                    await asyncio.gather(*sends)
                if await handled.wait(a.consume_timeout):
                    row["consumed_s"] = handled.times[-1] - t0
                else:
                    row["status"] = (
                        f"started, but only {handled.count} of {n_topics} messages were handled "
                        f"within {a.consume_timeout:g} s"
                    )
            held = await connections(r, app_client_prefix(app.name))
            row["connections"] = max(row["connections"], held)  # pools may grow while busy
    return row


async def width_raw(env: Env, n_topics: int) -> Row:
    """Raw: XGROUP CREATE MKSTREAM on every stream (pipelined), one XREADGROUP over them all."""
    await env.flushall()
    streams = [f"raw:{t}:{q}" for t in range(n_topics) for q in range(QUEUES)]
    row: Row = {"system": "raw", "topics": n_topics, "groups": "same"}
    async with env.redis("scale-raw") as r, env.redis("scale-raw") as reader:
        t0 = time.perf_counter()
        for part in range(0, len(streams), 1000):
            pipe = r.pipeline(transaction=False)
            for s in streams[part : part + 1000]:
                pipe.xgroup_create(s, "g", id="$", mkstream=True)
            await pipe.execute()
        await reader.ping()
        row["started_s"] = time.perf_counter() - t0
        got = 0
        all_read = anyio.Event()

        async def read() -> None:
            nonlocal got
            while got < n_topics:
                reply: Any = await reader.xreadgroup(
                    "g", "c", dict.fromkeys(streams, ">"), count=100, block=1000
                )
                for stream, entries in reply or ():
                    await reader.xack(stream, "g", *[e[0] for e in entries])
                    got += len(entries)
            all_read.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await asyncio.sleep(0.05)  # the read is blocked before the sends
            t1 = time.perf_counter()
            pipe = r.pipeline(transaction=False)
            for t in range(n_topics):
                pipe.xadd(f"raw:{t}:0", {"d": orjson.dumps(body(0))})
            await pipe.execute()
            with anyio.move_on_after(env.args.consume_timeout):
                await all_read.wait()
            if all_read.is_set():
                row["consumed_s"] = time.perf_counter() - t1
            else:
                row["status"] = f"{got} of {n_topics} read within {env.args.consume_timeout:g} s"
            row["connections"] = await connections(r, "scale-raw") - 1  # the reader
            tg.cancel_scope.cancel()
    return row


# ---------------------------------------------------------------------- 2. idle cost


async def idle(env: Env) -> list[Row]:
    return [await idle_one(env, n) for n in env.args.idle_topics]


async def idle_one(env: Env, n_topics: int) -> Row:
    a = env.args
    await env.flushall()
    settings = env.settings()
    row: Row = {"topics": n_topics, "window_s": a.idle_window}
    await create_topics(settings, [f"t{i}" for i in range(n_topics)])
    worker = WorkerProcess(
        env.worker_env(settings, SCALE_TOPICS=str(n_topics)), env.tmp / f"idle-{n_topics}.log"
    )
    worker.start()
    try:
        async with env.redis() as r:
            ready = await worker.wait_ready(a.start_timeout + a.import_allowance)
            row["connections"] = await connections(r, process_client_prefix(worker.pid))
            if ready is None:
                row["status"] = (
                    f"did not start within {a.start_timeout + a.import_allowance:g} s "
                    "(process start included)"
                    if worker.alive()
                    else f"the worker exited with code {worker.returncode}"
                )
                row["worker_log"] = worker.log_tail()
                worker.stop(grace=3.0)  # stuck starting: no drain to wait for
                return row
            row["ready_s"] = ready
            await asyncio.sleep(a.idle_settle)
            before, cpu0 = await ServerStats.take(r), proc_cpu(worker.pid)
            await asyncio.sleep(a.idle_window)
            after, cpu1 = await ServerStats.take(r), proc_cpu(worker.pid)
            if cpu0 is None or cpu1 is None or not worker.alive():
                row["status"] = f"the worker exited during the window (code {worker.returncode})"
                row["worker_log"] = worker.log_tail()
                return row
            redis = after.since(before, own_commands=1)
            row["worker_cpu_percent"] = 100 * (cpu1 - cpu0) / redis["seconds"]
            row["redis_cpu_percent"] = redis["cpu_percent"]
            row["commands_per_s"] = redis["commands_per_s"]
            row["top"] = top_commands(redis)
            row["redis"] = redis
    finally:
        worker.stop()
    return row


# ---------------------------------------------------------------------- 3. crash recovery


async def crash(env: Env) -> list[Row]:
    return [await crash_one(env, n) for n in env.args.pending]


async def crash_one(env: Env, n: int) -> Row:
    a = env.args
    vis = a.visibility
    row: Row = {"pending": n, "visibility_s": vis}
    with capture(env, row):
        await env.flushall()
        settings = env.settings(visibility_timeout=vis)
        app = rmq.App(settings)
        handled = Handled(n)

        @app.consumer("crash", group="g", start="first")
        async def handle(msg: rmq.Message) -> None:
            handled.hit(msg.body["i"])

        async with app:  # declares the topic and the group
            await fill(app, "crash", n)
        async with env.redis("scale-dead") as r:
            for stream in queue_streams(settings.namespace, "crash", QUEUES):
                while await r.xreadgroup("g", "dead", {stream: ">"}, count=10_000):
                    pass  # delivered to a consumer that never acknowledges: a crashed one
        claimable = time.perf_counter() + vis  # every entry is claimable from here on
        timeout = a.crash_timeout + vis
        async with running(app, a.start_timeout) as run:
            if run.seconds is None:
                row["status"] = run.why
                return row
            finished = await handled.wait(timeout)
            ended = handled.times[-1] if finished else time.perf_counter()
        row["handled"] = handled.count
        row["duplicates"] = handled.duplicates
        # from the moment everything was claimable: the wait for the first claim counts
        row["reclaim_rate"] = handled.count / max(1e-9, ended - claimable)
        if handled.times:
            row["first_after_visibility_s"] = handled.times[0] - claimable
        if finished:
            row["all_after_visibility_s"] = handled.times[-1] - claimable
        else:
            row["status"] = (
                f"{handled.count:,} of {n:,} handled within {timeout:g} s of the worker start"
            )
        if handled.count >= 20_000:
            row["first_20k_after_visibility_s"] = handled.times[19_999] - claimable
        row["fresh_rate"], _, _ = await rmq_backlog(env, n, visibility_timeout=vis)
        row["raw_reclaim_rate"] = await raw_reclaim(env, n, vis)
    return row


async def raw_reclaim(env: Env, n: int, vis: float) -> float:
    """Raw: N entries pending for a dead consumer; XAUTOCLAIM COUNT 100 + XACK until none."""
    await env.flushall()
    async with env.redis("scale-raw") as r:
        await raw_fill(r, "raw", n)
        await r.xgroup_create("raw", "g", id="0")
        while await r.xreadgroup("g", "dead", {"raw": ">"}, count=10_000):
            pass
        await asyncio.sleep(vis)
        t0, cursor, got = time.perf_counter(), "0-0", 0
        while True:
            reply: Any = await r.xautoclaim("raw", "g", "c", int(vis * 1000), cursor, count=100)
            cursor, entries = reply[0], reply[1]
            if entries:
                await r.xack("raw", "g", *[e[0] for e in entries])
                got += len(entries)
            if cursor in (b"0-0", "0-0"):
                break
        return got / (time.perf_counter() - t0)


# ---------------------------------------------------------------------- 4. backlog


async def backlog(env: Env) -> list[Row]:
    rows: list[Row] = []
    for n in env.args.backlog:
        runs = env.args.runs if n <= 100_000 else 1
        row: Row = {"backlog": n, "rmq": [], "raw": [], "redis_us_per_msg": []}
        with capture(env, row):
            for _ in range(runs):
                rate, cpu, why = await rmq_backlog(env, n)
                if rate is None:
                    row["status"] = why
                    break
                row["rmq"].append(rate)
                row["redis_us_per_msg"].append(cpu * 1e6 / n)
                row["raw"].append(await raw_backlog(env, n))
        rows.append(row)
    return rows


async def rmq_backlog(env: Env, n: int, **changes: Any) -> tuple[float | None, float, str]:
    """(msgs/s, Redis CPU seconds, "") of one in-process app draining `n` prefilled messages;
    (None, 0, why) if it could not."""
    await env.flushall()
    app = rmq.App(env.settings(**changes))
    handled = Handled(n)

    @app.consumer("backlog", group="g", start="first")
    async def handle(msg: rmq.Message) -> None:
        handled.hit(msg.body["i"])

    async with app:
        await fill(app, "backlog", n)
    async with env.redis() as r:
        before = await ServerStats.take(r)
        async with running(app, env.args.start_timeout) as run:
            if run.seconds is None:
                return None, 0.0, run.why
            limit = env.drain_timeout(n)
            if not await handled.wait(limit):
                return None, 0.0, f"{handled.count:,} of {n:,} drained within {limit:g} s"
        after = await ServerStats.take(r)
    return handled.rate(), after.cpu - before.cpu, ""


async def raw_backlog(env: Env, n: int) -> float:
    """Raw: XREADGROUP COUNT 100 + one XACK per batch over a prefilled stream (bench/core.py)."""
    await env.flushall()
    async with env.redis("scale-raw") as r:
        await raw_fill(r, "raw", n)
        await r.xgroup_create("raw", "g", id="0")
        got, first, last = 0, 0.0, 0.0
        while got < n:
            reply: Any = await r.xreadgroup("g", "c", {"raw": ">"}, count=100)
            entries = reply[0][1] if reply else []
            if not entries:
                raise RuntimeError(f"raw backlog: stream empty after {got} of {n}")
            for _, fields in entries:
                orjson.loads(fields[b"d"])
            if not got:
                first = time.perf_counter()
            got += len(entries)
            last = time.perf_counter()
            await r.xack("raw", "g", *[e[0] for e in entries])
        return (n - 1) / (last - first)


# ---------------------------------------------------------------------- 5. delayed messages


async def delayed(env: Env) -> list[Row]:
    return [
        await delayed_one(env, n, rate) for n in env.args.scheduled for rate in env.args.due_rates
    ]


async def delayed_one(env: Env, n: int, rate: float) -> Row:
    """`n` delayed messages scheduled; `rate` of them per second come due in the window."""
    a = env.args
    due_now = min(n, int(rate * a.delay_window))
    far = n - due_now
    row: Row = {"scheduled": n, "due_rate": rate, "due_in_window": due_now}
    with capture(env, row):
        await env.flushall()
        app = rmq.App(env.settings())
        handled = Handled(due_now)
        late: list[float] = []

        @app.consumer("delayed", group="g")
        async def handle(msg: rmq.Message) -> None:
            if msg.body["k"] not in handled.seen:
                late.append(time.time() - msg.body["due"])
            handled.hit(msg.body["k"])

        async def schedule(count: int, due: Callable[[int], float]) -> float:
            t0 = time.perf_counter()
            for k in range(count):
                at = due(k)
                when = dt.datetime.fromtimestamp(at, dt.UTC)
                app.send_oneway("delayed", {"due": at, "k": k}, deliver_at=when)
                if k % 5000 == 4999:
                    await app.flush()
            await app.flush()
            return count / max(1e-9, time.perf_counter() - t0)

        async with app:
            later = time.time() + 3600 + a.delay_window
            speed = await schedule(far, lambda k: later + k / 1000) if far else 0.0
        row["schedule_rate"] = speed or None
        guess = speed if far >= 5000 else 30_000.0
        async with env.redis() as r, running(app, a.start_timeout) as run:
            if run.seconds is None:
                row["status"] = run.why
                return row
            start_at = time.time() + 0.5 + 1.3 * due_now / guess
            await schedule(due_now, lambda k: start_at + k / rate)
            row["scheduling_overran_s"] = max(0.0, time.time() - start_at)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            before = await ServerStats.take(r)
            finished = await handled.wait(a.delay_window + env.drain_timeout(due_now))
            after = await ServerStats.take(r)
        redis = after.since(before, own_commands=1)
        promoted = handled.count
        row["promoted"] = promoted
        if not finished:
            row["status"] = f"{promoted:,} of {due_now:,} due messages handled in time"
        if promoted:
            row["redis_us_per_promoted"] = redis["cpu_seconds"] * 1e6 / promoted
            evalsha = next((t for t in redis["top"] if t["command"] == "evalsha"), None)
            row["evalsha_us_per_promoted"] = evalsha["usec"] / promoted if evalsha else 0.0
            ms = [x * 1000 for x in late]
            row["lateness_ms"] = {
                "p50": percentile(ms, 0.5), "p99": percentile(ms, 0.99), "max": max(ms),
                "min": min(ms),
            }  # fmt: skip
            row["top"] = top_commands(redis, per=promoted, unit="/msg")
        row["redis"] = redis
    return row


# ---------------------------------------------------------------------- 6. bodies


def json_like(size: int) -> dict[str, Any]:
    """A compressible JSON object (records with repeated keys) of about `size` bytes encoded."""

    def item(k: int) -> dict[str, Any]:
        return {"id": k, "user": f"user-{k % 97}", "email": f"user{k % 97}@example.com",
                "active": k % 3 == 0, "amount": round(k * 1.25, 2), "tags": ["a", "b"]}  # fmt: skip

    per_item = len(orjson.dumps(item(10_000))) + 1
    doc: dict[str, Any] = {"kind": "orders", "items": [item(k) for k in range(size // per_item)]}
    while len(orjson.dumps(doc)) > size - 10 and doc["items"]:
        doc["items"].pop()
    doc["pad"] = "x" * max(0, size - len(orjson.dumps(doc)) - 10)
    return doc


def random_bodies(size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(8)]


async def bodies(env: Env) -> list[Row]:
    rows: list[Row] = []
    for size in env.args.body_sizes:
        count = max(env.args.body_min, min(env.args.body_max, env.args.body_bytes // size))
        for kind in ("random", "json"):
            made: list[Any] = random_bodies(size) if kind == "random" else [json_like(size)]
            encoded = [b if isinstance(b, bytes) else orjson.dumps(b) for b in made]
            row: Row = {"size": size, "kind": kind, "messages": count, "rmq": [], "raw": [],
                        "bytes": len(encoded[0]), "stored_per_msg": []}  # fmt: skip
            with capture(env, row):
                for _ in range(env.args.runs):
                    mbs, stored = await rmq_bodies(env, made, count)
                    row["rmq"].append(mbs)
                    row["stored_per_msg"].append(stored)
                    row["raw"].append(await raw_bodies(env, made, count))
            rows.append(row)
    return rows


async def concurrently(count: int, senders: int, send: Callable[[int], Awaitable[Any]]) -> float:
    """Seconds for `senders` tasks to await `send(i)` for i in range(count), shared out."""
    numbers = iter(range(count))

    async def sender() -> None:
        for i in numbers:
            await send(i)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(senders):
            tg.start_soon(sender)
    return time.perf_counter() - t0


def _encoded_size(made: list[Any]) -> int:
    return sum(len(b if isinstance(b, bytes) else orjson.dumps(b)) for b in made) // len(made)


async def rmq_bodies(env: Env, made: list[Any], count: int) -> tuple[float, float]:
    """(MB/s, Redis bytes per message) of `count` rmq sends by 50 concurrent senders."""
    await env.flushall()
    async with rmq.App(env.settings()) as app, env.redis() as r:
        await app.send("bodies", made[0])
        before = int((await r.info("memory"))["used_memory"])
        seconds = await concurrently(
            count, env.args.senders, lambda i: app.send("bodies", made[i % len(made)])
        )
        stored = (int((await r.info("memory"))["used_memory"]) - before) / count
    return count * _encoded_size(made) / seconds / 1e6, stored


async def raw_bodies(env: Env, made: list[Any], count: int) -> float:
    """MB/s of 50 concurrent `await r.xadd(stream, {"d": body})` on one redis-py client (it
    opens a connection per concurrent command); JSON bodies are encoded per send (orjson)."""
    await env.flushall()
    async with env.redis("scale-raw") as r:
        await r.ping()

        async def send(i: int) -> None:
            b = made[i % len(made)]
            await r.xadd("raw", {"d": b if isinstance(b, bytes) else orjson.dumps(b)})

        seconds = await concurrently(count, env.args.senders, send)
    return count * _encoded_size(made) / seconds / 1e6


# ---------------------------------------------------------------------- 7. groups


async def groups(env: Env) -> list[Row]:
    return [await groups_one(env, g) for g in env.args.groups]


async def groups_one(env: Env, n_groups: int) -> Row:
    """One worker process, `n_groups` groups on one topic, each draining the same backlog."""
    a = env.args
    n = a.group_messages
    total = n * n_groups
    row: Row = {"groups": n_groups, "messages": n, "deliveries": total}
    await env.flushall()
    settings = env.settings()
    async with rmq.App(settings) as producer:
        await producer.admin.create_topic("t0")
        await fill(producer, "t0", n)
    records = env.tmp / f"groups-{n_groups}.rec"
    extra = {"SCALE_TOPICS": "1", "SCALE_GROUPS": str(n_groups), "SCALE_RECORD": str(records)}
    worker = WorkerProcess(env.worker_env(settings, **extra), env.tmp / f"groups-{n_groups}.log")
    reader = RecordFile(records)
    samples: list[tuple[float, float]] = []
    first = last = 0.0
    got = 0
    worker.start()
    try:
        deadline = time.monotonic() + a.start_timeout + a.import_allowance
        while got < total and time.monotonic() < deadline and worker.alive():
            sample(samples, worker.pid)
            times = reader.new()
            if times:
                got += len(times)
                first = first or min(times)
                last = max(last, max(times))
                deadline = time.monotonic() + a.stall_seconds  # progress: wait for more
            await asyncio.sleep(0.02)
        sample(samples, worker.pid)
        if got < total and not worker.alive():
            row["status"] = f"{got:,} of {total:,} deliveries recorded, then the worker exited "
            row["status"] += f"with code {worker.returncode}"
            row["worker_log"] = worker.log_tail()
        elif got < total:
            row["status"] = f"{got:,} of {total:,} deliveries recorded" + await _left(
                settings, n_groups, a.stall_seconds
            )
            row["worker_log"] = worker.log_tail()
    finally:
        worker.stop()
    row["delivered"] = got
    if got > 1 and last > first and samples:
        row["rate"] = (got - 1) / (last - first)
        cpu0 = max((c for t, c in samples if t <= first), default=samples[0][1])
        cpu1 = min((c for t, c in samples if t >= last), default=samples[-1][1])
        row["cpu_us_per_delivery"] = (cpu1 - cpu0) * 1e6 / got
    return row


def sample(samples: list[tuple[float, float]], pid: int) -> None:
    """Append (now, CPU seconds of `pid`) unless the process is gone."""
    cpu = proc_cpu(pid)
    if cpu is not None:
        samples.append((time.time(), cpu))


async def _left(settings: rmq.Settings, n_groups: int, stall: float) -> str:
    """What Redis says is left for the groups (public admin API), for a status line."""
    async with rmq.App(settings) as app:
        progress = [await app.admin.group_progress("t0", f"g{g}") for g in range(n_groups)]
    lag = sum(p.lag or 0 for p in progress)
    pending = sum(p.pending for p in progress)
    return f" (none for {stall:g} s); Redis: lag {lag:,}, pending {pending:,}"


# ---------------------------------------------------------------------- 8. per-message costs


async def sends_one(env: Env, loop: str) -> list[Row]:
    """One awaited send at a time: rmq `await app.send` vs one awaited raw XADD (core.py's)."""
    import core  # bench/core.py

    class Bench(core.Bench):
        def settings(self, **changes: Any) -> rmq.Settings:
            return super().settings(**{**env.overrides, **changes})

    ns = argparse.Namespace(count=env.args.send_count, mem_count=0, rate=0.0, duration=0.0)
    bench = Bench(ns, env.url)
    row: Row = {"figure": "one awaited send at a time", "loop": loop, "rmq": [], "raw": []}
    try:
        for _ in range(env.args.runs):
            for side, measure in (("raw", bench.raw_send_one), ("rmq", bench.rmq_send_one)):
                await bench.admin.flushall()
                row[side].append(await measure())
    finally:
        await bench.admin.aclose()
    return [row]


async def sends_tx(env: Env) -> list[Row]:
    """Transactional sends vs plain sends, 100 concurrent senders (bench/transactions.py)."""
    import transactions  # bench/transactions.py

    row: Row = {"figure": f"{transactions.CONCURRENCY} concurrent senders", "loop": "uvloop",
                "rmq": [], "raw": []}  # fmt: skip
    n = env.args.tx_count
    for run in range(env.args.runs):
        for side, send in (("raw", transactions.plain), ("rmq", transactions.transactional)):
            await env.flushall()
            rate = await transactions.measure(env.url, run, send, n, transactions.CONCURRENCY)
            row[side].append(rate)
    return [row]
