"""rmq at scale (issue 12): width, idle cost, crash recovery, backlogs, delayed messages, large
bodies, many groups and per-message costs, on a private redis-server, against raw redis-py.

Cases (`--only` takes a comma-separated list of these names):

1. width    one in-process app (`app.run`) consuming T topics x 4 queues, one group each (the same
            group name on every topic, or a distinct one per topic): seconds until `started`,
            connections it holds, seconds until one message sent to every topic is handled.
            Raw: pipelined XGROUP CREATE on every stream, one XREADGROUP over all of them.
2. idle     a separate `rmq worker run` process on T empty topics, after start-up: its CPU %
            (/proc/<pid>/stat), Redis CPU % (INFO cpu) and commands/s (INFO commandstats).
3. crash    N entries pending for a dead consumer (XREADGROUP without ack), then an in-process
            app with a short visibility timeout: reclaimed msgs/s vs the same settings' fresh
            consume rate and raw XAUTOCLAIM COUNT 100 + XACK; seconds from the visibility
            timeout to all handled.
4. backlog  N messages already stored, one in-process app: msgs/s vs raw XREADGROUP + XACK;
            Redis CPU per delivered message.
5. delayed  N delayed messages scheduled, of which R/s come due during the window: Redis CPU per
            promoted message (INFO cpu, and the EVALSHA usec of INFO commandstats), lateness.
6. bodies   100 B / 10 KiB / 1 MiB, random and JSON-like, 50 concurrent senders: MB/s of rmq
            `await app.send` vs 50 concurrent `await r.xadd` on one redis-py client.
7. groups   1/4/16 groups on one topic, one worker process: deliveries/s, worker CPU per delivery.
8. sends    one awaited send at a time on the default asyncio loop and on uvloop (bench/core.py's
            figures), and transactional vs plain sends, 100 concurrent senders
            (bench/transactions.py's method).

Every wait is bounded: a case that cannot start or finish in time says so ("did not start
within 15 s") and the run goes on. Cases run one after the other on one server (FLUSHALL
between figures); in-process cases run on uvloop, like bench/core.py, except where a case
names its loop.

    .venv/bin/python bench/scale.py              # the default sizes, about 5-8 minutes
    .venv/bin/python bench/scale.py --quick      # tiny sizes, well under a minute
    .venv/bin/python bench/scale.py --only crash,idle --set claim_interval=1

Writes bench/results/scale.md and scale.json (`--quick`: scale-quick.*); bench/run_all.py runs
it as the `scale` section of `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
from redis.utils import HIREDIS_AVAILABLE

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import core  # noqa: E402  (bench/core.py: git_commit)
import scale_cases as cases  # noqa: E402
from scale_env import Env, LogCapture, Row, describe  # noqa: E402
from scale_report import render  # noqa: E402

import rmq  # noqa: E402
from rmq.embedded import EmbeddedServer  # noqa: E402

Case = Callable[[Env], Awaitable[list[Row]]]
CASES: dict[str, list[tuple[str, Case]]] = {
    "width": [("uvloop", cases.width)],
    "idle": [("uvloop", cases.idle)],
    "crash": [("uvloop", cases.crash)],
    "backlog": [("uvloop", cases.backlog)],
    "delayed": [("uvloop", cases.delayed)],
    "bodies": [("uvloop", cases.bodies)],
    "groups": [("uvloop", cases.groups)],
    "sends": [
        ("asyncio", lambda env: cases.sends_one(env, "asyncio")),
        ("uvloop", lambda env: cases.sends_one(env, "uvloop")),
        ("uvloop", cases.sends_tx),
    ],
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_case(env: Env, name: str) -> dict[str, Any]:
    """Every part of case `name`, each on its own event loop, bounded by --case-timeout."""
    started = time.monotonic()
    result: dict[str, Any] = {"rows": [], "load_average": round(os.getloadavg()[0], 2)}
    for loop, part in CASES[name]:

        async def bounded(part: Case = part) -> list[Row]:
            async with asyncio.timeout(env.args.case_timeout):
                return await part(env)

        try:
            with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
                result["rows"] += runner.run(bounded())
        except TimeoutError:
            result["error"] = f"did not finish within {env.args.case_timeout:g} s (--case-timeout)"
        except Exception as exc:
            result["error"] = describe(exc)
        if "error" in result:
            break
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def parse_sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add = p.add_argument
    add("--quick", action="store_true", help="tiny sizes, 1 run: well under a minute")
    add("--only", default="", help=f"comma-separated cases: {', '.join(CASES)}")
    add("--runs", type=int, default=3, help="repetitions of the cheap figures (spread)")
    add("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="an rmq setting for every app and worker, e.g. --set claim_interval=1")  # fmt: skip
    add("--topics", type=parse_sizes, default=[1, 10, 100, 1000], help="width: topic counts")
    add("--start-timeout", type=float, default=15.0, help="seconds an app may take to start")
    add("--consume-timeout", type=float, default=15.0, help="width: seconds to handle T msgs")
    add("--import-allowance", type=float, default=5.0,
        help="seconds added to --start-timeout for a worker process to start Python")  # fmt: skip
    add("--idle-topics", type=parse_sizes, default=[100, 1000], help="idle: topic counts")
    add("--idle-window", type=float, default=10.0, help="idle: seconds measured")
    add("--idle-settle", type=float, default=2.0, help="idle: seconds after ready, unmeasured")
    add("--pending", type=parse_sizes, default=[10_000, 100_000], help="crash: PEL sizes")
    add("--visibility", type=float, default=2.0, help="crash: visibility_timeout (s)")
    add("--crash-timeout", type=float, default=20.0,
        help="crash: seconds after the visibility timeout to handle all")  # fmt: skip
    add("--backlog", type=parse_sizes, default=[10_000, 100_000, 1_000_000], help="backlogs")
    add("--scheduled", type=parse_sizes, default=[100_000, 1_000_000],
        help="delayed: scheduled counts")  # fmt: skip
    add("--due-rates", type=parse_sizes, default=[2_000, 20_000], help="delayed: due msgs/s")
    add("--delay-window", type=float, default=5.0, help="delayed: seconds of due messages")
    add("--body-sizes", type=parse_sizes, default=[100, 10_240, 1_048_576], help="bodies (B)")
    add("--body-bytes", type=int, default=64 << 20, help="bodies: bytes sent per figure")
    add("--body-min", type=int, default=200, help="bodies: fewest messages per figure")
    add("--body-max", type=int, default=20_000, help="bodies: most messages per figure")
    add("--senders", type=int, default=50, help="bodies: concurrent senders")
    add("--groups", type=parse_sizes, default=[1, 4, 16], help="groups: group counts")
    add("--group-messages", type=int, default=50_000, help="groups: backlog per group")
    add("--stall-seconds", type=float, default=10.0,
        help="groups: seconds without a delivery before the case reports what is left")  # fmt: skip
    add("--send-count", type=int, default=5_000, help="sends: one-at-a-time sends per run")
    add("--tx-count", type=int, default=20_000, help="sends: transactional sends per run")
    add("--drain-base", type=float, default=10.0, help="seconds every drain may take, plus")
    add("--drain-floor-rate", type=float, default=5_000.0, help="... N / this rate")
    add("--case-timeout", type=float, default=420.0, help="seconds one case may take in all")
    add("--out", type=Path, default=BENCH / "results", help="output directory")
    add("--json", type=Path, help="write the results JSON here only (bench/run_all.py)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.topics, args.start_timeout, args.consume_timeout = 1, [1, 10], 10.0, 5.0
        args.idle_topics, args.idle_window, args.idle_settle = [10], 2.0, 0.5
        args.pending, args.visibility, args.crash_timeout = [1_000], 0.5, 6.0
        args.backlog, args.scheduled, args.delay_window = [2_000], [5_000], 0.25
        args.body_bytes, args.body_min, args.body_max = 2 << 20, 10, 2_000
        args.groups, args.group_messages, args.send_count, args.tx_count = [1, 4], 2_000, 500, 500
    wanted = [c.strip() for c in args.only.split(",") if c.strip()] or list(CASES)
    unknown = [c for c in wanted if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    args.cases = wanted
    return args


def setting_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`--set name=value` pairs, checked by rmq.Settings: (for Settings, as RMQ_* variables)."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set wants NAME=VALUE, got {pair!r}")
        env[rmq.Settings.env_var(name.strip())] = value
    names = {rmq.Settings.env_var(f): f for f in rmq.Settings.__dataclass_fields__}
    unknown = [var[len("RMQ_") :].lower() for var in env if var not in names]
    if unknown:
        raise SystemExit(f"--set: unknown setting(s) {', '.join(unknown)} (see rmq.Settings)")
    try:
        parsed = rmq.Settings.from_env(env)
    except rmq.RMQError as exc:
        raise SystemExit(f"--set: {exc}") from None
    return {names[var]: getattr(parsed, names[var]) for var in env}, env


def machine_info(server: EmbeddedServer, version: str) -> dict[str, Any]:
    factory = loop_factory("uvloop")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "redis_server": f"{server.name} {version}", "redis_py": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE, "loop": "uvloop" if factory else "asyncio",
        "rmq": f"{rmq.__version__} ({core.git_commit()})", "platform": platform.platform(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides, env_overrides = setting_overrides(args.settings)
    for var in [v for v in os.environ if v.startswith("RMQ_")]:
        del os.environ[var]  # library defaults everywhere (bench/core.py's and transactions.py's
        # apps read RMQ_* too); change a setting with --set
    capture = LogCapture()
    rmq_log = logging.getLogger("rmq")
    rmq_log.addHandler(capture)  # rmq's warnings go into the report, not onto the terminal
    rmq_log.setLevel(logging.WARNING)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="rmq-scale-"))
    doc: dict[str, Any] = {"config": {**vars(args), "out": str(args.out), "json": None}}
    doc["config"]["overrides"] = overrides
    doc["cases"] = {}
    try:
        with EmbeddedServer() as server:
            with redis.Redis.from_url(server.url) as r:
                version = str(r.info("server")["redis_version"])
            log(f"scale: {server.name} {version} on port {server.port}; cases {args.cases}")
            env = Env(server.url, args, overrides, env_overrides, tmp, log=capture)
            for name in args.cases:
                log(f"  scale {name} ...")
                result = run_case(env, name)
                doc["cases"][name] = result
                log(f"  scale {name}: {result.get('error', 'done')} ({result['seconds']:g} s)")
            doc["machine"] = machine_info(server, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    doc["machine"]["elapsed_seconds"] = round(time.monotonic() - started)
    text = json.dumps(doc, indent=2, default=str) + "\n"
    if args.json is not None:
        args.json.write_text(text)
        return 0
    name = "scale-quick" if args.quick else "scale"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(text)
    md = "\n".join(render(doc, level=1)) + "\n"
    (args.out / f"{name}.md").write_text(md)
    print(md)
    log(f"wrote {args.out / name}.md and .json ({doc['machine']['elapsed_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
