"""`rmq bench produce|consume|e2e|delay`: RocketMQ's benchmark producer and consumer for rmq.

Every run works in a namespace of its own (`bench-<random>`) on the Redis of `--redis-url` /
RMQ_REDIS_URL (other RMQ_* settings apply), or on a private server with `--embedded`, and deletes
its keys at the end. A live progress line goes to stderr; the summary (msgs/s, MB/s, latency
avg/p50/p99/max, failures) to stdout, as one JSON document with `--json`.

- produce: `--concurrency` sender tasks, each awaiting `send` (or `send_batch` of `--batch`);
  latency is the duration of each call.
- consume: `--count` messages are stored first (send_batch), then one in-process consumer with
  `--concurrency` handlers drains them; latency is born -> handled (RocketMQ's B2C), so it
  includes the time in the backlog.
- e2e: a consumer runs while one sender offers `--rate` msgs/s (open loop); latency is send ->
  handled.
- delay: the same with messages delayed by `--delay` seconds; latency is the lateness
  (handled - due; negative = early).
"""

from __future__ import annotations

import enum
import math
import os
import string
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

import anyio
import orjson
import typer
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rmq import App, Message
from rmq.embedded import EmbeddedServer
from rmq.errors import BrokerUnavailable, ConfigError, RMQError
from rmq.settings import Settings, redact_url

from .options import EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE, JsonOption
from .output import Output, error
from .runtime import fail, loop_options, output, settings_for

app = typer.Typer(
    help="Benchmark producers and consumers (in a namespace of their own).", no_args_is_help=True
)

TOPIC = "bench"
GROUP = "bench"
PROGRESS_SECONDS = 0.5


class Payload(enum.StrEnum):
    JSON = "json"
    STR = "str"
    BYTES = "bytes"


# ---------------------------------------------------------------------- options

CountOption = Annotated[
    int, typer.Option("--count", "-n", min=1, help="Messages (an upper bound with --duration).")
]
DurationOption = Annotated[
    float | None,
    typer.Option("--duration", "-d", min=0.001, help="Stop after this many seconds.",
                 show_default=False),
]  # fmt: skip
SizeOption = Annotated[int, typer.Option("--size", "-s", min=1, help="Body size in bytes.")]
PayloadOption = Annotated[Payload, typer.Option("--payload", help="Body kind.")]
TagOption = Annotated[bool, typer.Option("--tag/--no-tag", help="Give every message a tag.")]
KeysOption = Annotated[bool, typer.Option("--keys/--no-keys", help="Give every message a key.")]
EmbeddedOption = Annotated[
    bool,
    typer.Option("--embedded", help="Run against a private redis-server started for the run."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")]
HandlerConcurrency = Annotated[
    int | None,
    typer.Option("--concurrency", "-c", min=1, help="Handler concurrency (default: settings).",
                 show_default=False),
]  # fmt: skip
RateOption = Annotated[float, typer.Option("--rate", "-r", min=0.001, help="Offered msgs/s.")]


@dataclass(frozen=True, slots=True)
class Config:
    """What one run does (echoed in the JSON summary)."""

    command: str
    count: int
    duration: float | None
    size: int
    payload: Payload
    tag: bool
    keys: bool
    concurrency: int | None = None
    batch: int = 1
    rate: float | None = None
    delay: float | None = None

    def doc(self) -> dict[str, Any]:
        out = {
            "count": self.count, "duration_seconds": self.duration, "size": self.size,
            "payload": self.payload.value, "tag": self.tag, "keys": self.keys,
            "concurrency": self.concurrency, "batch": self.batch, "rate": self.rate,
            "delay_seconds": self.delay,
        }  # fmt: skip
        return {k: v for k, v in out.items() if v is not None}


# ---------------------------------------------------------------------- bodies


class Bodies:
    """Bodies of `size` bytes of one kind; JSON bodies carry their index `i`."""

    def __init__(self, kind: Payload, size: int) -> None:
        self.kind = kind
        alphabet = (string.ascii_letters + string.digits).encode()
        printable = bytes(alphabet[b % len(alphabet)] for b in range(256))
        noise = os.urandom(size).translate(printable)
        self._bytes = os.urandom(size)
        self._text = noise.decode()
        overhead = len(orjson.dumps({"i": 0, "pad": ""}))  # the index's digits are extra
        self._pad = self._text[: max(0, size - overhead)]

    def make(self, i: int) -> Any:
        if self.kind is Payload.JSON:
            return {"i": i, "pad": self._pad}
        if self.kind is Payload.STR:
            return self._text
        return self._bytes

    def encoded_size(self, i: int) -> int:
        if self.kind is Payload.JSON:
            return len(orjson.dumps(self.make(i)))
        return len(self._bytes)

    def message(self, i: int, tag: bool, keys: bool) -> Message:
        return Message(self.make(i), tag="TagA" if tag else None, keys=[f"k{i}"] if keys else [])


# ---------------------------------------------------------------------- measuring


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Meter:
    """Counts, latencies and the progress line of one run."""

    label: str
    total: int
    quiet: bool = False
    ok: int = 0
    failures: int = 0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    first: float | None = None
    last: float | None = None

    def start(self) -> None:
        self.started = time.perf_counter()

    def done(self, count: int, size: int, latency: float | None = None) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.ok += count
        self.bytes += size
        if latency is not None:
            self.latencies.append(latency)

    def failed(self, exc: BaseException, count: int = 1) -> None:
        self.failures += count
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + count

    def line(self) -> str:
        elapsed = max(1e-9, time.perf_counter() - self.started)
        rate = self.ok / elapsed
        return (
            f"{self.label}: {self.ok:,}/{self.total:,} msgs  {rate:,.0f} msgs/s  "
            f"{self.bytes / elapsed / 1e6:.2f} MB/s  failures {self.failures}"
        )

    async def progress(self) -> None:
        """Print the progress line on stderr until cancelled (in place on a terminal)."""
        if self.quiet:
            return
        tty = sys.stderr.isatty()
        interval = PROGRESS_SECONDS if tty else 1.0
        try:
            while True:
                await anyio.sleep(interval)
                if tty:
                    sys.stderr.write("\r\x1b[K" + self.line())
                else:
                    sys.stderr.write(self.line() + "\n")
                sys.stderr.flush()
        finally:
            if tty:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()

    def summary(self, *, rate_from_first: bool = False) -> dict[str, Any]:
        """msgs/s over the whole run (or first -> last completion), MB/s, latency in seconds."""
        end = self.last if self.last is not None else time.perf_counter()
        if rate_from_first and self.first is not None and self.ok > 1:
            elapsed, count = end - self.first, self.ok - 1
        else:
            elapsed, count = end - self.started, self.ok
        elapsed = max(elapsed, 1e-9)
        ordered = sorted(self.latencies)
        latency: dict[str, float] | None = None
        if ordered:
            latency = {
                "avg": sum(ordered) / len(ordered), "p50": percentile(ordered, 0.5),
                "p99": percentile(ordered, 0.99), "max": ordered[-1], "min": ordered[0],
            }  # fmt: skip
        return {
            "messages": self.ok, "failures": self.failures, "errors": self.errors,
            "elapsed_seconds": elapsed, "msgs_per_second": count / elapsed,
            "mb_per_second": self.bytes / elapsed / 1e6 * (count / max(self.ok, 1)),
            "latency_seconds": latency,
        }  # fmt: skip


def _deadline(duration: float | None) -> float:
    return math.inf if duration is None else time.perf_counter() + duration


async def _produce(app_: App, cfg: Config, bodies: Bodies, meter: Meter) -> None:
    deadline = _deadline(cfg.duration)
    claimed = 0
    size = bodies.encoded_size(0)

    async def sender() -> None:
        nonlocal claimed
        while claimed < cfg.count and time.perf_counter() < deadline:
            first = claimed
            n = min(cfg.batch, cfg.count - first)
            claimed += n
            t0 = time.perf_counter()
            try:
                if cfg.batch == 1:
                    msg = bodies.message(first, cfg.tag, cfg.keys)
                    await app_.send(TOPIC, msg.body, tag=msg.tag, keys=msg.keys or None)
                else:
                    batch = [bodies.message(first + k, cfg.tag, cfg.keys) for k in range(n)]
                    await app_.send_batch(TOPIC, batch)
            except Exception as exc:
                meter.failed(exc, n)
                continue
            meter.done(n, n * size, time.perf_counter() - t0)

    await app_.context.topics.ensure(TOPIC)
    meter.start()
    async with anyio.create_task_group() as tg:
        for _ in range(cfg.concurrency or 1):
            tg.start_soon(sender)


async def _fill(app_: App, cfg: Config, bodies: Bodies) -> None:
    for start in range(0, cfg.count, 100):
        n = min(100, cfg.count - start)
        await app_.send_batch(
            TOPIC, [bodies.message(start + k, cfg.tag, cfg.keys) for k in range(n)]
        )


class Tracker:
    """Joins send times (by msg_id) with handler times; counts duplicates."""

    def __init__(self, meter: Meter, size: int, expected: int) -> None:
        self.meter = meter
        self.size = size
        self.expected = expected
        self.due: dict[str, float] = {}
        self.handled: dict[str, float] = {}
        self.duplicates = 0
        self.all_done = anyio.Event()

    def on_message(self, msg: Message) -> None:
        now = time.time()
        if msg.msg_id in self.handled:
            self.duplicates += 1
            return
        self.handled[msg.msg_id] = now
        self.meter.done(1, self.size)
        if len(self.handled) >= self.expected:
            self.all_done.set()

    def latencies(self) -> list[float]:
        return [self.handled[m] - t for m, t in self.due.items() if m in self.handled]


async def _consume(app_: App, cfg: Config, bodies: Bodies, meter: Meter) -> dict[str, Any]:
    await _fill(app_, cfg, bodies)
    tracker = Tracker(meter, bodies.encoded_size(0), cfg.count)
    born: dict[str, float] = {}

    async def handle(msg: Message) -> None:
        tracker.on_message(msg)
        born_at = msg.born_at
        if born_at is not None:
            born[msg.msg_id] = born_at.timestamp()

    app_.consumer(TOPIC, group=GROUP, start="first", concurrency=cfg.concurrency)(handle)
    meter.start()
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app_.run, handle_signals=False))
        with anyio.move_on_after(cfg.duration if cfg.duration is not None else math.inf):
            await tracker.all_done.wait()
        app_.stop()
    meter.latencies = [tracker.handled[m] - t for m, t in born.items()]
    meter.failures += cfg.count - len(tracker.handled) if cfg.duration is None else 0
    return {"duplicates": tracker.duplicates, "not_consumed": cfg.count - len(tracker.handled)}


async def _offer(
    app_: App, cfg: Config, bodies: Bodies, meter: Meter, delay: float | None
) -> dict[str, Any]:
    """A consumer runs; one sender offers `cfg.rate` msgs/s; latency = handled - due."""
    assert cfg.rate is not None
    total = cfg.count if cfg.duration is None else min(cfg.count, int(cfg.rate * cfg.duration))
    total = max(1, total)
    meter.total = total
    tracker = Tracker(meter, bodies.encoded_size(0), total)

    async def handle(msg: Message) -> None:
        tracker.on_message(msg)

    app_.consumer(TOPIC, group=GROUP, start="first", concurrency=cfg.concurrency)(handle)
    sent = 0
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app_.run, handle_signals=False))
        meter.start()
        t0 = time.perf_counter()
        for i in range(total):
            wait = t0 + i / cfg.rate - time.perf_counter()
            if wait > 0:
                await anyio.sleep(wait)
            msg = bodies.message(i, cfg.tag, cfg.keys)
            now = time.time()
            try:
                result = await app_.send(
                    TOPIC, msg.body, tag=msg.tag, keys=msg.keys or None, delay=delay
                )
            except Exception as exc:
                meter.failed(exc)
                tracker.expected -= 1
                continue
            tracker.due[result.msg_id] = now + (delay or 0.0)
            sent += 1
        achieved = sent / max(1e-9, time.perf_counter() - t0)
        if tracker.expected <= len(tracker.handled):
            tracker.all_done.set()
        with anyio.move_on_after(30.0 + (delay or 0.0)):
            await tracker.all_done.wait()
        app_.stop()
    meter.latencies = tracker.latencies()
    missing = sent - len(tracker.handled)
    meter.failures += missing
    return {"offered_rate": cfg.rate, "achieved_rate": achieved, "not_consumed": missing,
            "duplicates": tracker.duplicates}  # fmt: skip


# ---------------------------------------------------------------------- running


@asynccontextmanager
async def _bench_app(settings: Settings) -> AsyncIterator[App]:
    """An App in a fresh namespace; every key of that namespace is deleted at the end."""
    namespace = f"bench-{os.urandom(4).hex()}"
    bench_settings = settings.replace(namespace=namespace)
    try:
        yield App(bench_settings)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            await _delete_namespace(bench_settings.redis_url, namespace)


async def _delete_namespace(url: str, namespace: str) -> None:
    """Best effort: UNLINK every key of `namespace` (nothing to do if Redis is unreachable)."""
    client = Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)
    except (RedisError, OSError) as exc:
        error(f"could not delete the keys of namespace {namespace}: {exc}")
    finally:
        await client.aclose()


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside (nested) single-error exception groups, else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _run(
    settings: Settings, cfg: Config, quiet: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    bodies = Bodies(cfg.payload, cfg.size)
    meter = Meter(cfg.command, cfg.count, quiet)
    extra: dict[str, Any] = {}
    async with _bench_app(settings) as app_:
        async with app_:
            server = await app_.admin.server_info()
            async with anyio.create_task_group() as tg:
                tg.start_soon(meter.progress)
                if cfg.command == "produce":
                    await _produce(app_, cfg, bodies, meter)
                elif cfg.command == "consume":
                    extra = await _consume(app_, cfg, bodies, meter)
                else:
                    delay = cfg.delay if cfg.command == "delay" else None
                    extra = await _offer(app_, cfg, bodies, meter, delay)
                tg.cancel_scope.cancel()
    summary = meter.summary(rate_from_first=cfg.command == "consume")
    summary.update(extra)
    return summary, server


def _execute(ctx: typer.Context, cfg: Config, embedded: bool, quiet: bool, json: bool) -> None:
    out = output(ctx, json)
    settings = settings_for(ctx)
    server: EmbeddedServer | None = None
    if embedded:
        try:
            server = EmbeddedServer().start()
        except (OSError, RuntimeError, TimeoutError) as exc:
            fail(f"cannot start a private redis-server: {exc}", EXIT_FAILURE)
        settings = settings.replace(redis_url=server.url)
    runner: Callable[[], Awaitable[tuple[dict[str, Any], dict[str, Any]]]] = partial(
        _run, settings, cfg, quiet
    )
    try:
        try:
            summary, info = anyio.run(runner, backend_options=loop_options())
        except BaseExceptionGroup as group:
            raise _unwrap(group) from group
    except KeyboardInterrupt:
        fail("interrupted")
    except BrokerUnavailable as exc:
        fail(f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}", EXIT_UNAVAILABLE)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except RMQError as exc:
        fail(str(exc))
    finally:
        if server is not None:
            server.cleanup()
    where = "embedded" if embedded else redact_url(settings.redis_url)
    _report(out, cfg, summary, {**info, "url": where})
    if summary["failures"]:
        raise typer.Exit(EXIT_FAILURE)


def _report(out: Output, cfg: Config, summary: dict[str, Any], server: dict[str, Any]) -> None:
    if out.json:
        out.document({"command": cfg.command, "config": cfg.doc(), **summary, "server": server})
        return
    lat = summary["latency_seconds"]
    what = {
        "produce": "send call duration",
        "consume": "born -> handled (includes the backlog wait)",
        "e2e": "send -> handled",
        "delay": "lateness: handled - due",
    }[cfg.command]
    rows: list[tuple[str, str]] = [
        ("messages", f"{summary['messages']:,}"),
        ("failures", f"{summary['failures']:,}"),
        ("elapsed", f"{summary['elapsed_seconds']:.2f} s"),
        ("throughput", f"{summary['msgs_per_second']:,.0f} msgs/s"),
        ("bandwidth", f"{summary['mb_per_second']:.2f} MB/s"),
    ]
    if "achieved_rate" in summary:
        rows.append(("offered / achieved", f"{cfg.rate:,.0f} / {summary['achieved_rate']:,.0f}"))
    if lat is not None:
        rows.append(("latency", what))
        rows += [(f"  {key}", f"{lat[key] * 1000:.3f} ms") for key in ("avg", "p50", "p99", "max")]
    for name, count in summary["errors"].items():
        rows.append((f"error {name}", f"{count:,}"))
    title = f"rmq bench {cfg.command} ({server.get('name', '?')} {server.get('version', '')})"
    out.table(title, ["figure", "value"], rows)


# ---------------------------------------------------------------------- commands


@app.command("produce")
def produce(
    ctx: typer.Context,
    count: CountOption = 10_000,
    duration: DurationOption = None,
    size: SizeOption = 100,
    payload: PayloadOption = Payload.JSON,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Sender tasks.")
    ] = 1,
    batch: Annotated[
        int, typer.Option("--batch", "-b", min=1, help="Messages per send_batch (1: send).")
    ] = 1,
    tag: TagOption = False,
    keys: KeysOption = False,
    embedded: EmbeddedOption = False,
    quiet: QuietOption = False,
    json: JsonOption = False,
) -> None:
    """Send messages as fast as `--concurrency` senders can (RocketMQ's benchmark producer)."""
    cfg = Config("produce", count, duration, size, payload, tag, keys, concurrency, batch)
    _execute(ctx, cfg, embedded, quiet, json)


@app.command("consume")
def consume(
    ctx: typer.Context,
    count: CountOption = 10_000,
    duration: DurationOption = None,
    size: SizeOption = 100,
    payload: PayloadOption = Payload.JSON,
    concurrency: HandlerConcurrency = None,
    tag: TagOption = False,
    keys: KeysOption = False,
    embedded: EmbeddedOption = False,
    quiet: QuietOption = False,
    json: JsonOption = False,
) -> None:
    """Store --count messages, then drain them with one in-process consumer (no-op handler)."""
    cfg = Config("consume", count, duration, size, payload, tag, keys, concurrency)
    _execute(ctx, cfg, embedded, quiet, json)


@app.command("e2e")
def e2e(
    ctx: typer.Context,
    rate: RateOption = 1000.0,
    count: CountOption = 5_000,
    duration: DurationOption = None,
    size: SizeOption = 100,
    payload: PayloadOption = Payload.JSON,
    concurrency: HandlerConcurrency = None,
    tag: TagOption = False,
    keys: KeysOption = False,
    embedded: EmbeddedOption = False,
    quiet: QuietOption = False,
    json: JsonOption = False,
) -> None:
    """End-to-end latency: offer --rate msgs/s to a running consumer (send -> handled)."""
    cfg = Config("e2e", count, duration, size, payload, tag, keys, concurrency, rate=rate)
    _execute(ctx, cfg, embedded, quiet, json)


@app.command("delay")
def delay(
    ctx: typer.Context,
    delay_seconds: Annotated[
        float, typer.Option("--delay", min=0.0, help="Delay of every message, seconds.")
    ] = 1.0,
    rate: RateOption = 500.0,
    count: CountOption = 2_500,
    duration: DurationOption = None,
    size: SizeOption = 100,
    payload: PayloadOption = Payload.JSON,
    concurrency: HandlerConcurrency = None,
    tag: TagOption = False,
    keys: KeysOption = False,
    embedded: EmbeddedOption = False,
    quiet: QuietOption = False,
    json: JsonOption = False,
) -> None:
    """Delayed-message lateness: offer --rate delayed msgs/s; latency = handled - due."""
    cfg = Config(
        "delay", count, duration, size, payload, tag, keys, concurrency, rate=rate,
        delay=delay_seconds,
    )  # fmt: skip
    _execute(ctx, cfg, embedded, quiet, json)
