"""rmq doctor on the command line."""

from __future__ import annotations

from tests.cli.conftest import Invoke, as_json


def test_cli_doctor(cli: Invoke) -> None:
    cli("topic", "create", "orders", "-q", "2")
    text = cli("doctor", "orders")
    assert "maxmemory-policy" in text.stdout and "SLOT" in text.stdout
    assert "warning: AOF is off" in text.stderr
    doc = as_json(cli("doctor", "orders", "--json"))
    assert doc["healthy"] is False and doc["nodes"][0]["aof_enabled"] is False
    assert [q["queue_id"] for q in doc["topics"][0]["queues"]] == [0, 1]
