"""The benchmark suite (`make bench`): the raw limit, rmq and the peers, side by side.

One private redis-server (rmq.embedded.EmbeddedServer, a free loopback port, no persistence) for
the whole session; every figure uses the same message count N and the same ~100-byte JSON payload
`{"i": n, "t": send time, "pad": 60 x "x"}`.

1. In-process figures from bench/core.py (raw redis-py asyncio + hiredis + uvloop against rmq, on
   one loop; `--runs` repetitions, median): one awaited XADD vs `await app.send()`; XADD pipelined
   by 100 vs 100 concurrent senders and `send_batch` of 100; XREADGROUP COUNT 100 + XACK vs an
   in-process consumer; Redis memory per queued message (INFO memory around 100,000 messages).
2. Worker-process figures from the peer harness (bench/peers/run_peer.py, one driver per system):
   enqueue one at a time; ONE separate worker process (`rmq worker run`, the peer's own worker
   command) draining N messages with a no-op handler, every id counted; end-to-end latency at a
   fixed offered rate; for rmq also 2 worker processes and delayed-message lateness.
3. The peers, installed from PyPI into bench/.venv-peers (arq into bench/.venv-arq: it pins
   redis-py < 6), through the same harness. A peer that fails to install or run is reported.
4. The `scale` section (bench/scale.py, in a process of its own with its own private server):
   many topics, idle cost, crash recovery, backlogs, delayed messages, large bodies, many groups
   and per-message costs on both event loops (issue 12). `--smoke` runs it with `--quick`.
5. The `sync` section (bench/sync.py, its own process and server): the blocking client with one
   and 16 sender threads against sync redis-py XADD. The `otel` section (bench/otel.py): the
   consume and one-awaited-send figures with rmq.tracing off and on (`--otel-baseline REV` also
   measures the rmq/ of commit REV, without the tracing hooks). `--smoke` runs both `--quick`.

Writes bench/results/latest.md and latest.json (`--smoke`: latest-smoke.*).

    .venv/bin/python bench/run_all.py             # everything, about 10 minutes
    .venv/bin/python bench/run_all.py --smoke     # rmq and raw only, tiny counts, seconds
    .venv/bin/python bench/run_all.py --peers taskiq,faststream --runs 1
    .venv/bin/python bench/run_all.py --no-peers --scale-args "--only width,crash"
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.utils import HIREDIS_AVAILABLE

import rmq
from rmq.embedded import EmbeddedServer

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import core  # noqa: E402  (bench/core.py: the in-process measurements)
import otel as otel_bench  # noqa: E402  (bench/otel.py: the tracing section)
import scale_report  # noqa: E402  (bench/scale.py's report: the scale section)
import sync as sync_bench  # noqa: E402  (bench/sync.py: the blocking client section)

PEERS_DIR = BENCH / "peers"
PEER_VENV = BENCH / ".venv-peers"
ARQ_VENV = BENCH / ".venv-arq"
# driver module prefix -> the venv it runs in (None: this interpreter)
PEERS: dict[str, Path] = {
    "taskiq": PEER_VENV, "faststream": PEER_VENV, "bullmq": PEER_VENV, "dramatiq": PEER_VENV,
    "saq": PEER_VENV, "streaq": PEER_VENV, "celery": PEER_VENV, "arq": ARQ_VENV,
}  # fmt: skip
CORE_KEYS = [
    "raw_send_one", "rmq_send_one", "raw_pipelined", "rmq_concurrent", "rmq_batch",
    "raw_consume", "rmq_consume", "raw_memory", "rmq_memory_default",
]  # fmt: skip
TARGET_RATE = 2000.0  # the e2e latency target's offered rate
PEER_RATE = 500.0  # the offered rate every system is compared at (peers cannot all do 2,000/s)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Suite:
    args: argparse.Namespace
    url: str = ""
    core: dict[str, list[Any]] = field(default_factory=dict)
    harness: dict[str, dict[str, Any]] = field(default_factory=dict)
    installs: dict[str, str] = field(default_factory=dict)
    loads: list[tuple[str, float]] = field(default_factory=list)
    scale: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The sync and otel sections' results (or {"error": ...}), by name."""

    def note_load(self, step: str) -> None:
        self.loads.append((step, os.getloadavg()[0]))

    # ------------------------------------------------------------------ in-process (core.py)

    def run_core(self) -> None:
        a = self.args
        ns = argparse.Namespace(
            count=a.count, mem_count=a.mem_count, rate=TARGET_RATE, duration=a.duration
        )
        bench = core.Bench(ns, self.url)
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover
            pass
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            for rep in range(a.runs):
                for key in CORE_KEYS:
                    self.note_load(key)
                    runner.run(flushall(bench))
                    value = runner.run(getattr(bench, key)())
                    self.core.setdefault(key, []).append(value)
                    log(f"  core {rep + 1}/{a.runs} {key:<20} {core.fmt(value)}")
            runner.run(bench.admin.aclose())

    def core_median(self, key: str) -> float | None:
        values = self.core.get(key)
        return statistics.median(values) if values else None

    def paired(self, key: str, ref: str) -> float | None:
        """rmq / raw: the median of per-run ratios (runs alternate, so drift hits both)."""
        a, b = self.core.get(key), self.core.get(ref)
        if not a or not b:
            return None
        if len(a) == len(b):
            return float(statistics.median([x / y for x, y in zip(a, b, strict=True) if y]))
        return float(statistics.median(a) / statistics.median(b))

    # ------------------------------------------------------------------ worker processes

    def run_harness(self, label: str, peer: str, python: Path, extra: list[str]) -> None:
        a = self.args
        self.note_load(label)
        result = Path(f"/tmp/rmq-bench-{os.getpid()}-{label}.json")
        command = [
            str(python), str(PEERS_DIR / "run_peer.py"), peer, "--url", self.url,
            "--count", str(a.count), "--duration", str(a.duration), "--result", str(result),
            *extra,
        ]  # fmt: skip
        started = time.monotonic()
        log(f"  {label}: {' '.join(command[1:3])} ...")
        try:
            proc = subprocess.run(command, timeout=a.peer_timeout, check=False)
            doc = json.loads(result.read_text()) if result.exists() else {}
            if proc.returncode and "error" not in doc:
                doc["error"] = f"run_peer.py exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            doc = {"error": f"did not finish within {a.peer_timeout:g} s"}
        finally:
            result.unlink(missing_ok=True)
        doc["label"] = label
        doc["seconds"] = time.monotonic() - started
        if "error" in doc:
            log(f"  {label}: FAILED: {doc['error']}")
        self.harness[label] = doc

    def run_peers(self) -> None:
        wanted = list(PEERS) if self.args.peers == "all" else self.args.peers.split(",")
        for peer in wanted:
            if peer not in PEERS:
                self.harness[peer] = {"label": peer, "error": "unknown peer"}
                continue
            venv = PEERS[peer]
            problem = self.ensure_venv(venv)
            python = venv / "bin" / "python"
            if problem and not python.exists():
                self.harness[peer] = {"label": peer, "error": f"venv: {problem}"}
                continue
            self.run_harness(peer, peer, python, ["--rates", f"{PEER_RATE:g}"])
            if problem and "error" in self.harness[peer]:
                self.harness[peer]["error"] += f" (install: {problem})"

    def ensure_venv(self, venv: Path) -> str | None:
        """Create `venv` from its requirements file unless it is up to date; the problem, if any."""
        if str(venv) in self.installs:
            return self.installs[str(venv)] or None
        req = PEERS_DIR / ("requirements-arq.txt" if venv == ARQ_VENV else "requirements.txt")
        digest = hashlib.sha256(req.read_bytes()).hexdigest()
        stamp = venv / ".requirements-sha256"
        problem = ""
        if not (stamp.exists() and stamp.read_text() == digest):
            log(f"  installing {req.name} into {venv.name} (from PyPI) ...")
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            steps = [[sys.executable, "-m", "venv", str(venv)], [*pip, "--upgrade", "pip"]]
            try:
                for step in steps:
                    subprocess.run(step, check=True, capture_output=True, timeout=600)
                done = subprocess.run([*pip, "-r", str(req)], capture_output=True, timeout=1800)
                if done.returncode:  # one at a time, to name what does not install
                    failed = []
                    for line in req.read_text().splitlines():
                        wanted = line.split("#")[0].strip()
                        if not wanted:
                            continue
                        one = subprocess.run([*pip, wanted], capture_output=True, timeout=900)
                        if one.returncode:
                            failed.append(wanted)
                    problem = f"pip could not install {', '.join(failed) or req.name}"
                else:
                    stamp.write_text(digest)
            except (OSError, subprocess.SubprocessError) as exc:
                problem = f"could not create the venv: {exc}"
        self.installs[str(venv)] = problem
        return problem or None

    # ------------------------------------------------------------------ scale (bench/scale.py)

    def run_scale(self) -> None:
        """bench/scale.py in a process of its own (its own server), bounded by --scale-timeout."""
        a = self.args
        self.note_load("scale")
        result = Path(f"/tmp/rmq-bench-{os.getpid()}-scale.json")
        command = [sys.executable, str(BENCH / "scale.py"), "--json", str(result)]
        command += ["--quick"] if a.smoke else []
        command += shlex.split(a.scale_args)
        log(f"  scale: {' '.join(command[1:])} ...")
        try:
            proc = subprocess.run(command, timeout=a.scale_timeout, check=False)
            if result.exists():
                self.scale = json.loads(result.read_text())
            else:
                self.scale = {"error": f"bench/scale.py exited {proc.returncode} without results"}
        except subprocess.TimeoutExpired:
            self.scale = {"error": f"bench/scale.py did not finish within {a.scale_timeout:g} s"}
        finally:
            result.unlink(missing_ok=True)
        if "error" in self.scale:
            log(f"  scale: FAILED: {self.scale['error']}")

    def run_section(self, name: str, extra: list[str]) -> None:
        """bench/<name>.py in a process of its own (its own server), --quick with --smoke."""
        a = self.args
        self.note_load(name)
        result = Path(f"/tmp/rmq-bench-{os.getpid()}-{name}.json")
        command = [sys.executable, str(BENCH / f"{name}.py"), "--json", str(result), *extra]
        command += ["--quick"] if a.smoke else []
        log(f"  {name}: {' '.join(command[1:])} ...")
        try:
            proc = subprocess.run(command, timeout=a.section_timeout, check=False)
            if result.exists():
                doc = json.loads(result.read_text())
            else:
                doc = {"error": f"bench/{name}.py exited {proc.returncode} without results"}
        except subprocess.TimeoutExpired:
            doc = {"error": f"bench/{name}.py did not finish within {a.section_timeout:g} s"}
        finally:
            result.unlink(missing_ok=True)
        if "error" in doc:
            log(f"  {name}: FAILED: {doc['error']}")
        self.sections[name] = doc


async def flushall(bench: core.Bench) -> None:
    await bench.admin.flushall()


# ---------------------------------------------------------------------- the report


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}" if x < 100 else f"{x:,.0f}"


def _ratio(x: float | None, ref: float | None) -> str:
    if x is None or not ref:
        return "-"
    r = x / ref
    return f"{r:.2f}x" if r < 100 else f"{r:,.0f}x"


def _version(doc: dict[str, Any]) -> str:
    return " / ".join(f"{k} {v}" for k, v in doc.get("versions", {}).items())


@dataclass
class Row:
    measurement: str
    system: str
    rate: float | None = None
    raw_rate: float | None = None
    rmq_rate: float | None = None
    p50: float | None = None
    p99: float | None = None
    raw_lat: tuple[float, float] | None = None
    rmq_lat: tuple[float, float] | None = None
    notes: str = ""

    def cells(self) -> list[str]:
        if self.p50 is None:
            vs_raw, vs_rmq = _ratio(self.rate, self.raw_rate), _ratio(self.rate, self.rmq_rate)
        else:  # latency rows: ratios of p50 / p99
            vs_raw = _lat_ratio(self.p50, self.p99, self.raw_lat)
            vs_rmq = _lat_ratio(self.p50, self.p99, self.rmq_lat)
        return [
            self.measurement, self.system, _rate(self.rate), vs_raw, vs_rmq,
            _ms(self.p50), _ms(self.p99), self.notes,
        ]  # fmt: skip

    def doc(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}


def _lat_ratio(p50: float, p99: float | None, ref: tuple[float, float] | None) -> str:
    if ref is None:
        return "-"
    return f"{_ratio(p50, ref[0])} / {_ratio(p99, ref[1])}"


def _e2e(doc: dict[str, Any], rate: float) -> dict[str, Any] | None:
    e2e = doc.get("e2e", {}).get(f"{rate:g}")
    return e2e if e2e and "p50_ms" in e2e else None


def _lat(e2e: dict[str, Any] | None) -> tuple[float, float] | None:
    return None if e2e is None else (e2e["p50_ms"], e2e["p99_ms"])


def build_rows(s: Suite) -> list[Row]:
    c = s.core_median
    h = s.harness
    raw, mine = h.get("raw", {}), h.get("rmq", {})
    peers = [label for label in h if label not in ("raw", "rmq", "rmq-2proc")]
    rows: list[Row] = []

    one = "produce: one awaited send at a time"
    raw_one, rmq_one = c("raw_send_one"), c("rmq_send_one")
    rows.append(Row(one, "raw redis-py", raw_one, raw_one, rmq_one, notes="XADD"))
    rows.append(Row(one, "rmq", rmq_one, raw_one, rmq_one, notes="`await app.send()`"))
    for label in peers:
        doc = h[label]
        if "enqueue_rate" in doc:
            rows.append(Row(one, doc["name"], doc["enqueue_rate"], raw_one, rmq_one,
                            notes=_version(doc)))  # fmt: skip

    many = "produce: 100 in flight / batches of 100"
    pipe = c("raw_pipelined")
    batch = c("rmq_batch")
    rows.append(Row(many, "raw redis-py", pipe, pipe, batch, notes="XADD pipelined by 100"))
    rows.append(Row(many, "rmq", c("rmq_concurrent"), pipe, batch,
                    notes="100 concurrent `app.send()` tasks"))  # fmt: skip
    rows.append(Row(many, "rmq", batch, pipe, batch, notes="`app.send_batch()` of 100"))
    for label in peers:
        doc = h[label]
        if "bulk_rate" in doc:
            rows.append(Row(many, doc["name"], doc["bulk_rate"], pipe, batch,
                            notes="bulk API, chunks of 100"))  # fmt: skip

    proc = "consume + ack: one worker process"
    raw_proc, rmq_proc = raw.get("process_rate"), mine.get("process_rate")
    rows.append(Row(proc, "raw redis-py", raw_proc, raw_proc, rmq_proc,
                    notes="XREADGROUP COUNT 100 + XACK per batch, separate process"))  # fmt: skip
    rows.append(Row(proc, "rmq", rmq_proc, raw_proc, rmq_proc,
                    notes="`rmq worker run`, library defaults"))  # fmt: skip
    for label in peers:
        doc = h[label]
        if "process_rate" in doc:
            rows.append(Row(proc, doc["name"], doc["process_rate"], raw_proc, rmq_proc,
                            notes=doc.get("notes", "")))  # fmt: skip
    rows.append(Row(proc, "raw redis-py (in-process)", c("raw_consume"), raw_proc, rmq_proc,
                    notes="bench/core.py: reader in the measuring process"))  # fmt: skip
    rows.append(Row(proc, "rmq (in-process)", c("rmq_consume"), raw_proc, rmq_proc,
                    notes="bench/core.py: `app.run()` in the measuring process"))  # fmt: skip
    if "rmq-2proc" in h:
        two = h["rmq-2proc"]
        rows.append(Row("consume + ack: 2 worker processes", "rmq", two.get("process_rate"),
                        raw_proc, rmq_proc, notes="`rmq worker run --processes 2`"))  # fmt: skip

    for rate in (TARGET_RATE, PEER_RATE):
        what = f"e2e latency @{rate:,.0f} msgs/s offered"
        raw_e, rmq_e = _e2e(raw, rate), _e2e(mine, rate)
        systems = [("raw redis-py", raw), ("rmq", mine)]
        if rate == PEER_RATE:
            systems += [(h[label].get("name", label), h[label]) for label in peers]
        for name, doc in systems:
            e2e = _e2e(doc, rate)
            if e2e is None:
                continue
            note = "send -> handler, worker warm and idle"
            if e2e["seen"] < e2e["messages"]:
                note = f"only {e2e['seen']} of {e2e['messages']} handled in time"
            elif e2e.get("drain_seconds", 0.0) > 1.0:
                note = (
                    f"falls behind: the last message was handled {e2e['drain_seconds']:.1f} s "
                    "after the last send (queueing delay)"
                )
            elif e2e["achieved"] < 0.95 * rate:
                note = f"sender reached only {e2e['achieved']:,.0f} msgs/s"
            rows.append(Row(what, name, e2e["achieved"], p50=e2e["p50_ms"], p99=e2e["p99_ms"],
                            raw_lat=_lat(raw_e), rmq_lat=_lat(rmq_e), notes=note))  # fmt: skip

    delay = mine.get("delay")
    if delay and "p50_ms" in delay:
        rows.append(Row(
            f"delayed message lateness (delay {delay['delay_seconds']:g} s)", "rmq",
            delay["achieved"], p50=delay["p50_ms"], p99=delay["p99_ms"],
            notes=f"handled - due; max {delay['max_ms']:.1f} ms, "
            f"earliest {delay['min_ms']:+.1f} ms",
        ))  # fmt: skip

    mem = "Redis memory per queued message (bytes, in the msgs/s column)"
    raw_mem, rmq_mem = c("raw_memory"), c("rmq_memory_default")
    rows.append(Row(mem, "raw redis-py", raw_mem, raw_mem, rmq_mem, notes="XADD {d: body}"))
    rows.append(Row(mem, "rmq", rmq_mem, raw_mem, rmq_mem,
                    notes="send_batch; 6 fields per entry + dedup records"))  # fmt: skip
    return rows


def targets(s: Suite) -> list[dict[str, Any]]:
    c = s.core_median
    h = s.harness
    out: list[dict[str, Any]] = []

    def target(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": ok})

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    conc = s.paired("rmq_concurrent", "raw_pipelined")
    target("concurrent send / pipelined raw XADD (median of per-run ratios)", conc, ">= 0.60",
           _ge(conc, 0.60))  # fmt: skip
    one = s.paired("rmq_send_one", "raw_send_one")
    target("one awaited send / one awaited raw XADD (median of per-run ratios)", one, ">= 0.85",
           _ge(one, 0.85))  # fmt: skip
    rmq_proc = h.get("rmq", {}).get("process_rate")
    vs_raw = ratio(rmq_proc, h.get("raw", {}).get("process_rate"))
    target("consume, 1 worker process / raw XREADGROUP+XACK process", vs_raw, ">= 0.40",
           _ge(vs_raw, 0.40))  # fmt: skip
    vs_core = ratio(rmq_proc, c("raw_consume"))
    target("consume, 1 worker process / raw XREADGROUP+XACK in-process (core.py)", vs_core,
           ">= 0.40", _ge(vs_core, 0.40))  # fmt: skip
    peer_rates = [
        (doc["process_rate"], doc["name"])
        for label, doc in h.items()
        if label not in ("raw", "rmq", "rmq-2proc") and "process_rate" in doc
    ]
    if peer_rates:
        best, name = max(peer_rates)
        vs_peer = ratio(rmq_proc, best)
        target(f"consume, 1 worker process / fastest peer ({name}, {best:,.0f} msgs/s)",
               vs_peer, ">= 10", _ge(vs_peer, 10.0))  # fmt: skip
    e2e = _e2e(h.get("rmq", {}), TARGET_RATE)
    p50 = None if e2e is None else e2e["p50_ms"]
    p99 = None if e2e is None else e2e["p99_ms"]
    target(f"e2e p50 @{TARGET_RATE:,.0f}/s (ms)", p50, "<= 0.6", _ge(0.6, p50))
    target(f"e2e p99 @{TARGET_RATE:,.0f}/s (ms)", p99, "<= 1.5", _ge(1.5, p99))
    mem = s.paired("rmq_memory_default", "raw_memory")
    target("memory per queued message / raw XADD entry", mem, "<= 1.5", _ge(1.5, mem))
    for figure in s.sections.get("sync", {}).get("figures", []):
        if figure["target"] is not None:
            target(f"rmq.sync {figure['label']} / sync redis-py XADD", figure["ratio"],
                   f">= {figure['target']:g}", figure["met"])  # fmt: skip
    for row in s.sections.get("otel", {}).get("rows", []):
        if row["figure"] == "rmq_consume" and "off_vs_baseline" in row:
            off = row["off_vs_baseline"]
            target("consume with tracing off / without the tracing hooks", off,
                   f">= {otel_bench.TARGET:g}", _ge(off, otel_bench.TARGET))  # fmt: skip
    return out


def _ge(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a >= b


def machine_info(s: Suite, server: EmbeddedServer, version: str) -> dict[str, Any]:
    try:
        import uvloop

        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "redis_server": f"{server.name} {version}", "redis_py": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE, "loop": loop,
        "rmq": f"{rmq.__version__} ({core.git_commit()})",
        "platform": platform.platform(),
    }  # fmt: skip


def render(s: Suite, rows: list[Row], goals: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    a = s.args
    head = ["measurement", "system", "msgs/s", "x raw", "x rmq", "p50 ms", "p99 ms", "notes"]
    lines = [
        f"# rmq benchmark suite ({machine['date']})" + (" (smoke run)" if a.smoke else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines += ["", "## Targets", "", "| target | value | goal | met |", "|---|---:|---|---|"]
    for g in goals:
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['target']} | {value} | {g['goal']} | {met} |")
    failed = {k: v for k, v in s.harness.items() if "error" in v}
    peers = [k for k in s.harness if k not in ("raw", "rmq", "rmq-2proc")]
    if peers and not failed and not any(s.installs.values()):
        lines += ["", f"All {len(peers)} peers installed from PyPI and ran: {', '.join(peers)}."]
    if failed or any(s.installs.values()):
        lines += ["", "## Failed or not measured", ""]
        for label, doc in failed.items():
            lines.append(f"- {label}: {doc['error'].splitlines()[0]}")
        for venv, problem in s.installs.items():
            if problem:
                lines.append(f"- install into {Path(venv).name}: {problem}")
    values = [load for _, load in s.loads] or [os.getloadavg()[0]]
    loads = (
        f"min {min(values):.2f}, median {statistics.median(values):.2f}, max {max(values):.2f} "
        f"over {len(values)} steps (each step's in latest.json)"
    )
    lines += [
        "",
        "## Machine and method",
        "",
        "- " + ", ".join(f"{k}: {v}" for k, v in machine.items()),
        f"- Load average (1 min) at the start of each step: {loads}; at the end "
        f"{machine.get('load_average_end', 0.0):.2f}. The machine is shared: other sessions' "
        "tests and servers may run at the same time. Compare ratios from one run rather than "
        "absolute rates.",
        f"- N = {a.count:,} messages per throughput figure; in-process figures (bench/core.py) are "
        f"the median of {a.runs} run(s); worker-process figures (bench/peers/run_peer.py) are one "
        f"run each. Memory: {a.mem_count:,} messages. Every run starts from FLUSHALL.",
        "- Targets on in-process pairs use the median of per-run ratios (raw and rmq runs "
        "alternate); the table shows the median of each side's runs.",
        "- x raw = figure / the matching raw redis-py figure (one awaited XADD; XADD pipelined by "
        "100; the raw worker process); x rmq = figure / the matching rmq figure (one awaited "
        "send; send_batch; one `rmq worker run` process). For throughput, above 1 is faster; "
        "for latency rows the ratios are p50 / p99, and above 1 is slower; for memory, above 1 "
        "is bigger.",
        "- consume: the backlog of N messages is enqueued first, then ONE worker process is "
        "started (the framework's own worker command); rate = (N-1) / (last - first handler "
        "completion); every id must be seen. Handlers are no-ops that record (id, time) in "
        "memory; a thread writes them out every 50 ms, adding no Redis work.",
        f"- e2e: with the worker warm and idle, one send per message, open-loop at the offered "
        f"rate for {a.duration:g} s; latency = handler time - send time (same clock). The "
        "producer and the worker are separate processes. Senders run on uvloop.",
        "- Peers use their defaults (concurrency, logging, result retention) except where the "
        "notes say; each notes cell names its worker command.",
        f"- Suite runtime: {s.args.elapsed:.0f} s.",
    ]
    for name, module, title in (("sync", sync_bench, "Blocking client (rmq.sync)"),
                                ("otel", otel_bench, "Tracing cost (rmq.tracing)")):  # fmt: skip
        doc = s.sections.get(name)
        if doc is None:
            continue
        if "error" in doc:
            lines += ["", f"## {title}", "", f"**Not measured: {doc['error']}**"]
        else:
            lines += ["", *module.render(doc, level=2)]
    if s.scale.get("error"):
        lines += ["", "## Scale", "", f"**Not measured: {s.scale['error']}**"]
    elif s.scale:
        lines += ["", *scale_report.render(s.scale, level=2)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny counts, rmq and raw only, no peers: a few seconds")  # fmt: skip
    p.add_argument("--count", type=int, default=20_000, help="messages per figure N")
    p.add_argument("--runs", type=int, default=3, help="repetitions of the in-process figures")
    p.add_argument("--mem-count", type=int, default=100_000, help="messages for memory figures")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per offered e2e rate")
    p.add_argument("--delay", type=float, default=1.0, help="delay of the lateness test (s)")
    p.add_argument("--peers", default="all", help="comma-separated peers, or all")
    p.add_argument("--no-peers", action="store_true", help="raw and rmq only")
    p.add_argument("--peer-timeout", type=float, default=900.0, help="seconds per system")
    p.add_argument("--no-scale", action="store_true", help="skip the scale section")
    p.add_argument("--scale-args", default="",
                   help='bench/scale.py options, e.g. "--only width,idle"')  # fmt: skip
    p.add_argument("--scale-timeout", type=float, default=1200.0,
                   help="seconds the scale section may take in all")  # fmt: skip
    p.add_argument("--no-sync", action="store_true", help="skip the sync section")
    p.add_argument("--no-otel", action="store_true", help="skip the otel section")
    p.add_argument("--otel-baseline", default="",
                   help="otel section: also measure rmq/ of this commit (no hooks)")  # fmt: skip
    p.add_argument("--section-timeout", type=float, default=600.0,
                   help="seconds the sync or the otel section may take")  # fmt: skip
    p.add_argument("--out", type=Path, default=BENCH / "results", help="output directory")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: rewrite the report from a results JSON")  # fmt: skip
    args = p.parse_args(argv)
    if args.smoke:
        args.count, args.runs, args.mem_count = 300, 1, 2_000
        args.duration, args.delay, args.no_peers = 0.5, 0.3, True
    return args


def write(suite: Suite, machine: dict[str, Any], out: Path) -> None:
    """Write `<name>.md` and `<name>.json` into `out` and print the report."""
    args = suite.args
    rows = build_rows(suite)
    goals = targets(suite)
    text = render(suite, rows, goals, machine)
    out.mkdir(parents=True, exist_ok=True)
    name = "latest-smoke" if args.smoke else "latest"
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    config.pop("render", None)
    doc = {
        "machine": machine, "config": config, "rows": [row.doc() for row in rows],
        "targets": goals, "core": suite.core, "harness": suite.harness,
        "installs": suite.installs, "load_averages": suite.loads, "scale": suite.scale,
        "sections": suite.sections,
    }  # fmt: skip
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)
    log(f"wrote {out / name}.md and .json")


def rerender(path: Path, out: Path) -> int:
    doc = json.loads(path.read_text())
    args = argparse.Namespace(**doc["config"])
    suite = Suite(args, core=doc["core"], harness=doc["harness"], installs=doc["installs"],
                  loads=[(step, load) for step, load in doc["load_averages"]],
                  scale=doc.get("scale", {}), sections=doc.get("sections", {}))  # fmt: skip
    write(suite, doc["machine"], out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        return rerender(args.render, args.out)
    started = time.monotonic()
    suite = Suite(args)
    with EmbeddedServer() as server:
        suite.url = server.url
        with redis.Redis.from_url(server.url) as r:
            info: dict[str, Any] = r.info("server")
            version = str(info["redis_version"])
        log(f"{server.name} {version} on port {server.port}; N={args.count:,}")
        suite.run_core()
        py = Path(sys.executable)
        target = f"{PEER_RATE:g},{TARGET_RATE:g}"
        suite.run_harness("raw", "raw", py, ["--rates", target])
        delay = ["--delay", str(args.delay), "--delay-duration", str(args.duration)]
        suite.run_harness("rmq", "rmq", py, ["--rates", target, *delay])
        if not args.smoke:
            two = ["--processes", "2", "--rates", "", "--no-bulk"]
            suite.run_harness("rmq-2proc", "rmq", py, two)
        if not args.no_peers:
            suite.run_peers()
        if not args.no_sync:
            suite.run_section("sync", [])
        if not args.no_otel:
            base = ["--baseline-commit", args.otel_baseline] if args.otel_baseline else []
            suite.run_section("otel", base)
        if not args.no_scale:
            suite.run_scale()
        machine = machine_info(suite, server, version)
    args.elapsed = time.monotonic() - started
    machine["load_average_end"] = round(os.getloadavg()[0], 2)
    machine["elapsed_seconds"] = round(args.elapsed)
    write(suite, machine, args.out)
    log(f"suite runtime {args.elapsed:.0f} s")
    failed = any("error" in suite.harness.get(k, {}) for k in ("raw", "rmq"))
    failed = failed or any("error" in doc for doc in suite.sections.values())
    return 1 if failed or "error" in suite.scale else 0


if __name__ == "__main__":
    sys.exit(main())
