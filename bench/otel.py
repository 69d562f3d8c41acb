"""What tracing costs: bench/core.py's consume and one-awaited-send figures with rmq.tracing off
and on, in the same run (and, with `--baseline-commit`, a tree without the tracing hooks).

- off: nothing instrumented (the default: the hooks are None);
- on: `rmq.tracing.instrument(provider)` with an SDK `TracerProvider` whose span processor drops
  every span (each span is made, filled and ended: the cost of the instrumentation itself, not of
  an exporter);
- baseline (with `--baseline-commit REV`): the `rmq/` of commit REV (extracted with `git
  archive`), to measure what the hooks cost while off.

Each figure runs in a process of its own (the configurations alternate, `--runs` times; medians
and median per-run ratios to `off`), against one private redis-server.

    .venv/bin/python bench/otel.py                        # N=20,000, 3 runs: about a minute
    .venv/bin/python bench/otel.py --quick                # N=2,000, 1 run
    .venv/bin/python bench/otel.py --baseline-commit 997add3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FIGURES = [("rmq_consume", "consume + ack, in-process, no-op handler (msgs/s)"),
           ("rmq_send_one", "one awaited send at a time (msgs/s)")]  # fmt: skip
TARGET = 0.95  # off / baseline on consume


def child(mode: str, url: str, count: int, figure: str) -> None:
    """Measure one figure in this process and print it as JSON."""
    sys.path.insert(0, str(BENCH))
    import core  # the rmq it imports is this tree's, or the baseline's (PYTHONPATH)

    if mode == "on":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        import rmq.tracing

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        rmq.tracing.instrument(provider)
    ns = argparse.Namespace(count=count, mem_count=1000, rate=1000.0, duration=1.0)
    import uvloop

    async def main() -> float:
        bench = core.Bench(ns, url)
        try:
            value: float = await getattr(bench, figure)()
            return value
        finally:
            await bench.admin.aclose()

    import rmq

    print(json.dumps({"value": uvloop.run(main()), "rmq": rmq.__file__}))


def run_child(mode: str, url: str, count: int, figure: str, baseline: Path | None) -> float:
    env = dict(os.environ)
    if mode == "baseline":
        assert baseline is not None
        env["PYTHONPATH"] = str(baseline)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--url", url,
               "--count", str(count), "--figure", figure]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{mode} {figure} failed: {done.stderr.strip()[-500:]}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    if mode == "baseline" and not str(doc["rmq"]).startswith(str(baseline)):
        raise RuntimeError(f"the baseline run imported {doc['rmq']}, not the baseline's rmq")
    return float(doc["value"])


def extract(commit: str, into: Path) -> Path:
    """`rmq/` of `commit`, extracted under `into` (importable from there)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "rmq"],
                             capture_output=True, check=True)  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def measure(url: str, count: int, runs: int, baseline: Path | None) -> dict[str, Any]:
    import redis

    modes = ["off", "on"] + (["baseline"] if baseline else [])
    values: dict[str, dict[str, list[float]]] = {}
    admin = redis.Redis.from_url(url)
    for rep in range(runs):
        for figure, _ in FIGURES:
            for mode in modes:
                admin.flushall()  # every figure starts from an empty server, as in core.py
                value = run_child(mode, url, count, figure, baseline)
                values.setdefault(figure, {}).setdefault(mode, []).append(value)
                print(f"  otel {rep + 1}/{runs} {figure:<13} {mode:<8} {value:>10,.0f}",
                      file=sys.stderr)  # fmt: skip
    admin.close()
    rows = []
    for figure, label in FIGURES:
        got = values[figure]
        off = got["off"]
        row: dict[str, Any] = {"figure": figure, "label": label,
                               "off": statistics.median(off), "on": statistics.median(got["on"]),
                               "on_vs_off": statistics.median(
                                   a / b for a, b in zip(got["on"], off, strict=True))}  # fmt: skip
        if "baseline" in got:
            row["baseline"] = statistics.median(got["baseline"])
            row["off_vs_baseline"] = statistics.median(
                a / b for a, b in zip(off, got["baseline"], strict=True)
            )
        rows.append(row)
    return {"count": count, "runs": runs, "rows": rows, "values": values}


def render(doc: dict[str, Any], level: int = 1) -> list[str]:
    head = "#" * level
    has_base = any("baseline" in r for r in doc["rows"])
    lines = [
        f"{head} Tracing cost (rmq.tracing off and on)",
        "",
        f"N={doc['count']:,}, {doc['runs']} run(s), each figure in a process of its own; on = "
        "an SDK provider whose processor drops every span; ratios are medians of per-run ratios.",
        "",
        "| measurement | off | on | on / off |"
        + (" without hooks | off / without |" if has_base else ""),
        "|---|---:|---:|---:|" + ("---:|---:|" if has_base else ""),
    ]
    for r in doc["rows"]:
        line = f"| {r['label']} | {r['off']:,.0f} | {r['on']:,.0f} | {r['on_vs_off']:.2f}x |"
        if has_base:
            line += f" {r['baseline']:,.0f} | {r['off_vs_baseline']:.2f}x |"
        lines.append(line)
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="N=2,000, one run")
    p.add_argument("--baseline-commit", help="also measure rmq/ of this commit (no hooks)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--figure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.url, args.count, args.figure)
        return 0
    if args.quick:
        args.count, args.runs = 2_000, 1
    from rmq.embedded import EmbeddedServer

    with tempfile.TemporaryDirectory(prefix="rmq-otel-base-") as tmp, EmbeddedServer() as server:
        baseline = extract(args.baseline_commit, Path(tmp)) if args.baseline_commit else None
        doc = measure(server.url, args.count, args.runs, baseline)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print("\n".join(render(doc)))
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
