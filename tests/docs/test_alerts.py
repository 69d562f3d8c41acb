"""The monitoring page's example alert rules are valid and use only metrics rmq exposes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from rmq.metrics import METRIC_NAMES
from tests.docs.conftest import SNIPPETS

RULES = SNIPPETS / "alerts.yml"


def test_alert_rules_use_existing_metrics() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 5
    for rule in rules:
        used = set(re.findall(r"\brmq_[a-z_]+", rule["expr"]))
        assert used and used <= METRIC_NAMES, (rule["alert"], used - METRIC_NAMES)


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian's prometheus package)")
        pytest.skip("promtool is not installed")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
