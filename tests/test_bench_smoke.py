"""The benchmark suite's smoke mode (`bench/run_all.py --smoke`), so the suite cannot rot.

Tiny counts, rmq and raw redis-py only, no peers: the in-process figures of bench/core.py, the
worker-process figures of bench/peers/run_peer.py (a real `rmq worker run` process) and the
`scale` section (bench/scale.py --quick), on private servers. Only that it runs and reports is
checked, not how fast anything is (nor whether a scale case met its target).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rmq.embedded import find_server_binary

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_smoke_suite_runs_and_reports(tmp_path: Path) -> None:
    if find_server_binary() is None:
        pytest.skip("no redis-server or valkey-server binary")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--smoke", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((tmp_path / "latest-smoke.json").read_text())
    md = (tmp_path / "latest-smoke.md").read_text()

    for label in ("raw", "rmq"):
        run = doc["harness"][label]
        assert "error" not in run, run
        assert run["process_rate"] > 0 and run["enqueue_rate"] > 0
        assert run["process_duplicates"] == 0
    assert doc["harness"]["rmq"]["delay"]["seen"] == doc["harness"]["rmq"]["delay"]["messages"]
    for key in ("raw_send_one", "rmq_send_one", "raw_pipelined", "rmq_concurrent", "rmq_batch",
                "raw_consume", "rmq_consume", "raw_memory", "rmq_memory_default"):  # fmt: skip
        assert doc["core"][key] and doc["core"][key][0] > 0, key

    systems = {(row["measurement"], row["system"]) for row in doc["rows"]}
    assert ("consume + ack: one worker process", "rmq") in systems
    assert any(m.startswith("e2e latency @2,000") and s == "rmq" for m, s in systems)
    names = " | ".join(t["target"] for t in doc["targets"])
    assert "concurrent send / pipelined raw XADD" in names
    assert "memory per queued message / raw XADD entry" in names
    assert all(t["value"] is not None for t in doc["targets"]), doc["targets"]
    assert doc["machine"]["cores"] == os.cpu_count()
    assert "| measurement | system | msgs/s |" in md and "## Targets" in md
    assert "Load average" in md
    _check_scale(doc["scale"], md)


def _check_scale(scale: dict[str, Any], md: str) -> None:
    """Every case of bench/scale.py ran to its end and reported rows (statuses are allowed)."""
    cases = scale["cases"]
    assert set(cases) == {"width", "idle", "crash", "backlog", "delayed", "bodies", "groups",
                          "sends"}, cases  # fmt: skip
    for name, case in cases.items():
        assert "error" not in case, (name, case)
        assert case["rows"], name
    width = {(r["system"], r["topics"], r["groups"]): r for r in cases["width"]["rows"]}
    for key in (("raw", 1, "same"), ("rmq", 1, "same"), ("rmq", 1, "distinct")):
        assert width[key]["started_s"] > 0 and width[key]["consumed_s"] > 0, width[key]
        assert width[key]["connections"] >= 1
    idle = cases["idle"]["rows"][0]
    assert idle["connections"] >= 1
    assert "redis_cpu_percent" in idle or "did not start" in idle["status"], idle
    crash = cases["crash"]["rows"][0]
    assert crash["fresh_rate"] > 0 and crash["raw_reclaim_rate"] > 0
    assert crash["handled"] == crash["pending"] or "handled within" in crash["status"], crash
    assert all(r["rmq"] and r["raw"] and min(r["rmq"] + r["raw"]) > 0
               for name in ("backlog", "bodies") for r in cases[name]["rows"])  # fmt: skip
    for row in cases["delayed"]["rows"]:
        assert row["promoted"] == row["due_in_window"], row
        assert row["lateness_ms"]["p99"] >= row["lateness_ms"]["p50"]
    for row in cases["groups"]["rows"]:
        assert row["delivered"] == row["deliveries"] and row["rate"] > 0, row
    loops = {r["loop"] for r in cases["sends"]["rows"]}
    assert loops == {"asyncio", "uvloop"}
    assert all(min(r["rmq"] + r["raw"]) > 0 for r in cases["sends"]["rows"])
    assert "## Scale (issue 12" in md and "### Width" in md and "### Targets (issue 12)" in md
