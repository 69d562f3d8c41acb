"""The benchmark suite's smoke mode (`bench/run_all.py --smoke`), so the suite cannot rot.

Tiny counts, rmq and raw redis-py only, no peers: the in-process figures of bench/core.py and the
worker-process figures of bench/peers/run_peer.py (a real `rmq worker run` process), on a private
server. Only that it runs and reports is checked, not how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmq.embedded import find_server_binary

REPO = Path(__file__).resolve().parents[1]


def test_smoke_suite_runs_and_reports(tmp_path: Path) -> None:
    if find_server_binary() is None:
        pytest.skip("no redis-server or valkey-server binary")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--smoke", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90, check=False,
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
