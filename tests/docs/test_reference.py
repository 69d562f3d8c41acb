"""The reference pages are generated from the code, and cover all of it."""

from __future__ import annotations

import dataclasses

import yaml

import rmq
from docs.hooks import reference
from rmq import metrics
from tests.docs.conftest import ROOT


def test_cli_reference_has_every_command_option_and_variable() -> None:
    page = reference.cli_reference()
    commands = reference.cli_commands()
    names = {c.name for c in commands}
    assert {"rmq", "rmq topic create", "rmq worker run", "rmq dlq replay", "rmq bench e2e"} <= names
    for command in commands:
        assert f"`{command.name}` {{ #{command.anchor} }}" in page
        assert command.usage in page
        for decl, _text, envvar in command.options:
            assert reference._code(decl) in page
            if envvar:
                assert f"`{envvar}`" in page
    worker = next(c for c in commands if c.name == "rmq worker run")
    assert any("--processes" in decl for decl, _, _ in worker.options)
    assert "RMQ_PROCESSES" in {env for _, _, env in worker.options}


def test_metrics_reference_lists_every_metric() -> None:
    rows = reference.metric_rows()
    assert {row.name for row in rows} == metrics.METRIC_NAMES
    page = reference.metrics_reference()
    for row in rows:
        assert f"| `{row.name}` | {row.kind} |" in page
        assert row.help
    consumed = next(r for r in rows if r.name == "rmq_messages_consumed_total")
    assert consumed.labels == ("topic", "group", "result") and consumed.source == "in-process"
    assert "`result` (ack, retry, dead_letter, reject, skip)" in page


def test_settings_reference_lists_every_field_with_env_default_unit_and_meaning() -> None:
    rows = {row.name: row for row in reference.setting_rows()}
    assert set(rows) == {f.name for f in dataclasses.fields(rmq.Settings)}
    page = reference.settings_reference()
    for row in rows.values():
        assert row.env == rmq.Settings.env_var(row.name)
        assert row.help, f"Settings.{row.name} has no docstring (rmq/settings.py)"
        assert row.section
        assert f"| `{row.name}`<br>`{row.env}` |" in page
    assert rows["visibility_timeout"].unit == "seconds"
    assert rows["visibility_timeout"].default == "30"
    assert rows["retention"].default == "259200 (3 d)"
    assert rows["max_body_bytes"].unit == "bytes"
    assert rows["max_body_bytes"].default == "4194304 (4 MiB)"
    assert rows["retention_max_len"].default == "unset (off)"
    assert rows["strict_topics"].default == "off"


def test_api_reference_renders_every_public_name() -> None:
    page = reference.api_reference()
    for name in rmq.__all__:
        if name != "__version__":
            assert f"::: rmq.{name}\n" in page
    assert "RMQError" in page.split("```text", 1)[1]  # the exception tree
    for name in ("rmq.sync.App", "rmq.sync.PullConsumer", "rmq.tracing.instrument"):
        assert f"::: {name}\n" in page


def test_every_generated_page_is_in_the_nav() -> None:
    nav = str(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    for path in reference.PAGES:
        assert path in nav
