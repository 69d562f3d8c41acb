"""The alert rules shipped in compose/prometheus/rules/: checked and unit-tested with promtool.

`promtool check rules` accepts them; `promtool test rules tests/promtool/rmq-alerts.test.yml`
feeds them input series and checks which alerts fire, with which labels and annotations; every
alert has a test where it fires. promtool comes from Debian's `prometheus` package (`.ci/run`
installs it): skipped locally without it, required on CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "compose" / "prometheus" / "rules" / "rmq-alerts.yml"
UNIT_TESTS = ROOT / "tests" / "promtool" / "rmq-alerts.test.yml"
EXPECTED = {
    "RmqRedisDown", "RmqExporterMissing", "RmqWorkerTargetDown", "RmqConsumerLagGrowing",
    "RmqOldestPendingStuck", "RmqDeadLettersIncreasing", "RmqLagWithoutConsumers",
    "RmqPublishErrors", "RmqUnackedMessagesTrimmed",
}  # fmt: skip


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_rules_cover_what_an_operator_needs() -> None:
    rules = alerts()
    assert {rule["alert"] for rule in rules} == EXPECTED
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", UNIT_TESTS.name],
        cwd=UNIT_TESTS.parent, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    assert (UNIT_TESTS.parent / doc["rule_files"][0]).resolve() == RULES
    firing = {
        case["alertname"]
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert firing == EXPECTED
    assert quiet == EXPECTED  # and a moment where it does not (yet) fire


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: a rule whose threshold is off by 10x is caught."""
    rules = tmp_path / "compose" / "prometheus" / "rules"
    rules.mkdir(parents=True)
    (rules / RULES.name).write_text(RULES.read_text().replace("> 600", "> 6000"))
    tests = tmp_path / "tests" / "promtool"
    tests.mkdir(parents=True)
    (tests / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text())
    result = subprocess.run(
        [promtool(), "test", "rules", UNIT_TESTS.name],
        cwd=tests, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "RmqOldestPendingStuck" in result.stdout + result.stderr
