"""The report of bench/scale.py: one table per case and the targets of issue 12, from its JSON.

`render(doc, level)` gives Markdown lines (level 1: a document of its own, bench/results/scale.md;
level 2: the `Scale` section of bench/results/latest.md); `targets(doc)` checks issue 12's goals.
Ratios: "x smallest" divides by the same figure of the smallest case in the table, "x raw" by
raw redis-py doing the same Redis work in the same run (for paired runs, the median of per-run
ratios). Nothing here measures; `bench/run_all.py --render` rewrites a report from its JSON.
"""

from __future__ import annotations

import statistics
from typing import Any

Row = dict[str, Any]


def _med(values: list[float] | float | None) -> float | None:
    if isinstance(values, list):
        return statistics.median(values) if values else None
    return values


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 0.01 else f"{x:.3f}"
    return text + unit


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    r = a / b
    return f"{r:,.0f}x" if r >= 100 else f"{r:.2f}x" if r >= 0.01 or r == 0 else f"{r:.4f}x"


def _paired(a: list[float], b: list[float]) -> float | None:
    """The median of per-run ratios a_i / b_i (runs alternate, so drift hits both sides)."""
    pairs = [x / y for x, y in zip(a, b, strict=False) if y]
    return statistics.median(pairs) if pairs else None


def _spread(values: list[float] | None) -> str:
    if not values or len(values) < 2:
        return ""
    return f" ({_num(min(values))}-{_num(max(values))})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _notes(row: Row) -> str:
    parts = [row["status"]] if row.get("status") else []
    parts += [f"rmq logged {e['count']}x: {e['example'][:140]}" for e in row.get("log", [])[:2]]
    if row.get("worker_log") and row.get("status"):
        parts.append(f"worker log: {row['worker_log'][:200]}")
    return _cell("; ".join(parts))


_TEXT_COLUMNS = ("system", "kind", "busiest", "notes", "figure", "loop")


def _x(x: float | None) -> str:
    return "-" if x is None else _ratio(x, 1.0)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    text = [i == 0 or h.startswith(_TEXT_COLUMNS) for i, h in enumerate(head)]
    align = ["---" if t else "---:" for t in text]
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(align) + "|",
        *["| " + " | ".join(r) + " |" for r in rows],
    ]


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n:,} B"


# ---------------------------------------------------------------------- the cases


def _width(rows: list[Row]) -> list[str]:
    first: dict[str, float] = {}
    raw_start = {r["topics"]: r.get("started_s") for r in rows if r["system"] == "raw"}
    out = []
    for r in rows:
        key = f"{r['system']}:{r['groups']}"
        start = r.get("started_s")
        if start is not None:
            first.setdefault(key, start)
        conns = _num(r.get("connections"))
        if r.get("status") and start is None and r.get("connections") is not None:
            conns += " (at the timeout)"
        vs_raw = _ratio(start, raw_start.get(r["topics"])) if r["system"] == "rmq" else ""
        groups = "one group per topic" if r["groups"] == "distinct" else "same group name"
        out.append([
            f"{r['topics']:,}", f"{r['system']}, {groups}", _num(start),
            _ratio(start, first.get(key)), vs_raw, conns, _num(r.get("consumed_s")), _notes(r),
        ])  # fmt: skip
    head = ["topics x 4 queues", "system", "started after (s)", "x smallest", "x raw",
            "connections", "one msg per topic, all handled after (s)", "notes"]  # fmt: skip
    return _table(head, out)


def _idle(rows: list[Row]) -> list[str]:
    base = next((r for r in rows if "worker_cpu_percent" in r), {})
    out = []
    for r in rows:
        keys = ("worker_cpu_percent", "redis_cpu_percent", "commands_per_s")
        w, c, n = (r.get(k) for k in keys)
        x = " / ".join(_ratio(r.get(k), base.get(k)) for k in keys)
        out.append([f"{r['topics']:,}", _num(r.get("ready_s")), _num(w, " %"), _num(c, " %"),
                    _num(n), x if w is not None else "-", _num(r.get("connections")),
                    _cell(r.get("top", "")), _notes(r)])  # fmt: skip
    head = ["empty topics", "ready after (s)", "worker CPU", "Redis CPU", "Redis commands/s",
            "x smallest (worker / Redis / commands)", "connections", "busiest commands",
            "notes"]  # fmt: skip
    return _table(head, out)


def _crash(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        rate = r.get("reclaim_rate")
        out.append([
            f"{r['pending']:,}", _num(rate), _num(r.get("fresh_rate")),
            _ratio(rate, r.get("fresh_rate")), _num(r.get("raw_reclaim_rate")),
            _ratio(rate, r.get("raw_reclaim_rate")), _num(r.get("first_after_visibility_s")),
            _num(r.get("all_after_visibility_s")), _num(r.get("first_20k_after_visibility_s")),
            _notes(r),
        ])  # fmt: skip
    head = ["pending (dead consumer)", "reclaimed msgs/s", "fresh consume msgs/s",
            "reclaim / fresh", "raw XAUTOCLAIM+XACK msgs/s", "x raw",
            "first handled (s after visibility)", "all handled (s after)",
            "first 20,000 handled (s after)", "notes"]  # fmt: skip
    return _table(head, out)


def _backlog(rows: list[Row]) -> list[str]:
    base = next((_med(r["rmq"]) for r in rows if r.get("rmq")), None)
    out = []
    for r in rows:
        mine, raw = _med(r.get("rmq")), _med(r.get("raw"))
        out.append([
            f"{r['backlog']:,}", _num(mine) + _spread(r.get("rmq")), _ratio(mine, base),
            _num(raw) + _spread(r.get("raw")), _x(_paired(r.get("rmq", []), r.get("raw", []))),
            _num(_med(r.get("redis_us_per_msg"))), _notes(r),
        ])  # fmt: skip
    head = ["backlog", "rmq msgs/s", "x smallest", "raw XREADGROUP+XACK msgs/s", "x raw",
            "Redis CPU us per delivered msg (rmq)", "notes"]  # fmt: skip
    return _table(head, out)


def _delayed(rows: list[Row]) -> list[str]:
    base = next((r.get("redis_us_per_promoted") for r in rows if "redis_us_per_promoted" in r),
                None)  # fmt: skip
    out = []
    for r in rows:
        late = r.get("lateness_ms", {})
        us = r.get("redis_us_per_promoted")
        lat = " / ".join(_num(late.get(k)) for k in ("p50", "p99", "max")) if late else "-"
        notes = _notes(r)
        if r.get("scheduling_overran_s"):
            notes += f"; scheduling overran the window start by {r['scheduling_overran_s']:.2f} s"
        out.append([
            f"{r['scheduled']:,}", f"{r['due_rate']:,.0f}", f"{r.get('promoted', 0):,}",
            _num(us), _ratio(us, base), _num(r.get("evalsha_us_per_promoted")), lat,
            _cell(r.get("top", "")), notes.strip("; "),
        ])  # fmt: skip
    head = ["scheduled", "due msgs/s", "promoted", "Redis CPU us per promoted", "x smallest",
            "EVALSHA us per promoted", "lateness p50 / p99 / max (ms)",
            "busiest commands per promoted msg", "notes"]  # fmt: skip
    return _table(head, out)


def _bodies(rows: list[Row]) -> list[str]:
    base: dict[str, float | None] = {}
    out = []
    for r in rows:
        mine, raw = _med(r.get("rmq")), _med(r.get("raw"))
        base.setdefault(r["kind"], mine)
        out.append([
            _size(r["size"]), "random (incompressible)" if r["kind"] == "random" else "JSON-like",
            f"{r['messages']:,}", _num(mine) + _spread(r.get("rmq")),
            _num(raw) + _spread(r.get("raw")), _x(_paired(r.get("rmq", []), r.get("raw", []))),
            _ratio(mine, base[r["kind"]]), _num(_med(r.get("stored_per_msg"))), _notes(r),
        ])  # fmt: skip
    head = ["body", "kind", "msgs", "rmq MB/s", "raw MB/s", "x raw", "x smallest",
            "Redis bytes per msg (rmq)", "notes"]  # fmt: skip
    return _table(head, out)


def _groups(rows: list[Row]) -> list[str]:
    base = next((r for r in rows if "rate" in r), {})
    rate, cpu = "rate", "cpu_us_per_delivery"
    out = [
        [
            f"{r['groups']}",
            f"{r['deliveries']:,}",
            _num(r.get(rate)),
            _ratio(r.get(rate), base.get(rate)),
            _num(r.get(cpu)),
            _ratio(r.get(cpu), base.get(cpu)),
            _notes(r),
        ]
        for r in rows
    ]
    head = ["groups", "deliveries", "deliveries/s", "x smallest", "worker CPU us per delivery",
            "x smallest", "notes"]  # fmt: skip
    return _table(head, out)


def _sends(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        one = r["figure"].startswith("one awaited")
        what = "`await app.send` vs one awaited raw XADD" if one else (
            "`send_in_transaction` vs plain `send`")  # fmt: skip
        mine, ref = _med(r.get("rmq")), _med(r.get("raw"))
        out.append([
            _cell(f"{r['figure']}: {what}"), r["loop"], _num(mine) + _spread(r.get("rmq")),
            _num(ref) + _spread(r.get("raw")), _x(_paired(r.get("rmq", []), r.get("raw", []))),
            _notes(r),
        ])  # fmt: skip
    head = ["figure", "loop", "rmq msgs/s", "reference msgs/s", "x reference", "notes"]
    return _table(head, out)


SECTIONS = {
    "width": (
        "Width: one in-process app consuming T topics x 4 queues",
        _width,
        "raw: pipelined XGROUP CREATE MKSTREAM on the T x 4 streams, then one connection "
        "blocking in XREADGROUP over all of them. Connections: CLIENT LIST entries named "
        "after the app.",
    ),
    "idle": (
        "Idle cost: a separate `rmq worker run` process on empty topics",
        _idle,
        "CPU % of one core over the window: the worker from /proc/<pid>/stat, Redis from "
        "INFO cpu; commands from INFO stats/commandstats deltas (the probe's INFO excluded).",
    ),
    "crash": (
        "Crash recovery: entries pending for a dead consumer",
        _crash,
        "The entries are delivered with XREADGROUP to a consumer that never acknowledges, "
        "then one in-process app with the short visibility timeout starts; reclaimed msgs/s "
        "= handled / (last handled - the moment all were claimable). Fresh: the same "
        "settings draining a fresh backlog of the same size. Raw: XAUTOCLAIM COUNT 100 + "
        "XACK in a loop.",
    ),
    "backlog": (
        "Backlog: messages already stored, one in-process app",
        _backlog,
        "raw: XREADGROUP COUNT 100, orjson per body, one XACK per batch (bench/core.py's "
        "loop). Redis CPU from INFO cpu while the app drains.",
    ),
    "delayed": (
        "Delayed messages: promotion cost and lateness",
        _delayed,
        "N scheduled: N - (due rate x window) are due an hour later, the rest come due "
        "at the given rate during the window while one in-process app runs. Redis CPU "
        "from INFO cpu over the window until all due messages are handled (deliveries "
        "included), per promoted message; lateness = handled - due.",
    ),
    "bodies": (
        "Bodies: 50 concurrent senders",
        _bodies,
        "MB/s of body bytes (10^6). rmq: 50 tasks awaiting `app.send`; raw: 50 concurrent "
        "`await r.xadd(stream, {'d': body})` on one redis-py asyncio client (its pool opens "
        "a connection per concurrent command), JSON bodies encoded per send with orjson.",
    ),
    "groups": (
        "Groups: one topic, one worker process consuming every group",
        _groups,
        "`rmq worker run`, a backlog read by each group from the first entry; deliveries "
        "recorded by the handler into files (no Redis command); worker CPU from "
        "/proc/<pid>/stat between the first and the last delivery.",
    ),
    "sends": (
        "Per-message costs",
        _sends,
        "One awaited send: bench/core.py's `raw_send_one` / `rmq_send_one` on each loop. "
        "Transactional: bench/transactions.py's `measure` (prepare + no-op local "
        "transaction + commit) vs plain sends, 100 concurrent senders.",
    ),
}


# ---------------------------------------------------------------------- targets


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's goals, checked on what this run measured (met None: not measured)."""
    case = {name: c.get("rows", []) for name, c in doc.get("cases", {}).items()}
    out: list[dict[str, Any]] = []

    def goal(name: str, value: float | None, shown: str, want: str, met: bool | None) -> None:
        out.append({"target": name, "value": value, "shown": shown, "goal": want, "met": met})

    def le(x: float | None, limit: float) -> bool | None:
        return None if x is None else x <= limit

    width = [r for r in case.get("width", []) if r["system"] == "rmq"]
    for variant in ("same", "distinct") if "width" in case else ():
        rows = [r for r in width if r["groups"] == variant]
        big = next((r for r in rows if r["topics"] == 1000), None)
        small = rows[0] if rows else None
        label = "same group" if variant == "same" else "a group per topic"
        if big is None:
            goal(f"1,000 topics start ({label}), s", None, "not measured", "<= 2", None)
            continue
        start = big.get("started_s")
        goal(f"1,000 topics start ({label}), s", start, _num(start) if start else "did not start",
             "<= 2", start is not None and start <= 2.0)  # fmt: skip
        conns, base = big.get("connections"), (small or {}).get("connections")
        ok = None if conns is None or base is None or start is None else conns <= base + 4
        goal(f"connections at 1,000 topics ({label})", conns,
             f"{_num(conns)} (1 topic: {_num(base)})" + ("" if start else ", not started"),
             "<= the 1-topic figure + 4", ok)  # fmt: skip
    idle = next((r for r in case.get("idle", []) if r["topics"] == 1000), None)
    idle_keys = (("worker_cpu_percent", "worker"), ("redis_cpu_percent", "Redis"))
    for key, what in idle_keys if "idle" in case else ():
        value = None if idle is None else idle.get(key)
        shown = "not measured" if idle is None else _num(value) if value is not None else \
            idle.get("status", "-")  # fmt: skip
        met = None if idle is None else (value is not None and value <= 2.0)
        goal(f"1,000 idle topics: {what} CPU, % of a core", value, shown, "<= 2", met)
    crash = case.get("crash", [])
    if crash:
        big = max(crash, key=lambda r: r["pending"])
        ratio = None
        if big.get("reclaim_rate") and big.get("fresh_rate"):
            ratio = big["reclaim_rate"] / big["fresh_rate"]
        goal(f"reclaim / fresh consume rate, {big['pending']:,} pending", ratio, _x(ratio),
             ">= 0.5", None if ratio is None else ratio >= 0.5)  # fmt: skip
        has = [r for r in crash if r["pending"] >= 20_000]
        if has:
            t20 = has[-1].get("first_20k_after_visibility_s")
            goal("20,000 pending handled, s after the visibility timeout", t20,
                 _num(t20) if t20 is not None else "not within the case timeout", "<= 5",
                 t20 is not None and t20 <= 5.0)  # fmt: skip
    for r in case.get("delayed", []):
        what = f"{r['scheduled']:,} scheduled, due {r['due_rate']:,.0f}/s"
        us = r.get("redis_us_per_promoted")
        goal(f"Redis CPU us per promoted msg ({what})", us, _num(us), "<= 10", le(us, 10.0))
        p99 = r.get("lateness_ms", {}).get("p99")
        goal(f"lateness p99 ms ({what})", p99, _num(p99), "<= 10", le(p99, 10.0))
    for r in case.get("bodies", []):
        if r["size"] >= 10_240:
            x = _paired(r.get("rmq", []), r.get("raw", []))
            goal(f"{_size(r['size'])} {r['kind']} bodies, rmq / raw MB/s", x, _x(x), ">= 0.8",
                 None if x is None else x >= 0.8)  # fmt: skip
    grp = {r["groups"]: r.get("rate") for r in case.get("groups", [])}
    if 16 in grp and 1 in grp:
        x = grp[16] / grp[1] if grp[16] and grp[1] else None
        goal("16 groups / 1 group deliveries/s", x, _x(x), ">= 0.9",
             None if x is None else x >= 0.9)  # fmt: skip
    for r in case.get("sends", []):
        x = _paired(r.get("rmq", []), r.get("raw", []))
        if r["figure"].startswith("one awaited"):
            goal(f"one awaited send / raw XADD ({r['loop']})", x, _x(x), ">= 0.9",
                 None if x is None else x >= 0.9)  # fmt: skip
        else:
            goal("transactional / plain sends, 100 concurrent", x, _x(x), ">= 0.5",
                 None if x is None else x >= 0.5)  # fmt: skip
    return out


# ---------------------------------------------------------------------- the document


def render(doc: dict[str, Any], level: int = 2) -> list[str]:
    """The scale report as Markdown lines; `level` is the heading level of its title."""
    h = "#" * level
    machine = doc.get("machine", {})
    cfg = doc.get("config", {})
    title = "rmq at scale" if level == 1 else "Scale"
    lines = [f"{h} {title} (issue 12, {machine.get('date', '?')})" + (
        " (quick run)" if cfg.get("quick") else ""), ""]  # fmt: skip
    lines += [
        "Every figure from one private server, library defaults (4 queues per topic) plus "
        f"`shutdown_grace=2`{_overrides(cfg)}; in-process cases on {machine.get('loop', '?')}. "
        "The machine is shared and busy: compare ratios of one run, not absolute figures across "
        "runs. `bench/scale.py --help` lists every size and timeout.",
        "",
    ]
    for name, (heading, table, method) in SECTIONS.items():
        result = doc.get("cases", {}).get(name)
        if result is None:
            continue
        lines += [f"{h}# {heading}", ""]
        if result.get("rows"):
            lines += table(result["rows"])
            lines.append("")
        if result.get("error"):
            lines += [f"**The case stopped: {_cell(result['error'])}**", ""]
        lines += [f"{method} ({result.get('seconds', 0):g} s, load average "
                  f"{result.get('load_average', 0):.2f} at the start.)", ""]  # fmt: skip
    goals = targets(doc)
    if goals:
        lines += [f"{h}# Targets (issue 12)", "", "| target | value | goal | met |",
                  "|---|---:|---|---|"]  # fmt: skip
        for g in goals:
            met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
            lines.append(f"| {g['target']} | {_cell(g['shown'])} | {g['goal']} | {met} |")
        lines.append("")
    lines.append("Machine: " + ", ".join(f"{k}: {v}" for k, v in machine.items()) + ".")
    return lines


def _overrides(cfg: dict[str, Any]) -> str:
    overrides = cfg.get("overrides") or {}
    return "".join(f", `{k}={v}`" for k, v in overrides.items())
