"""rmq group list|progress|consumers|delete|reset-offset."""

from __future__ import annotations

import time

from tests.cli.conftest import Invoke, as_json


def setup_group(cli: Invoke, messages: int = 4) -> None:
    cli("topic", "create", "orders", "-q", "2")
    cli("consume", "orders", "-g", "billing", "-n", "1", "-w", "0")  # declares the group at last
    for n in range(messages):
        cli("send", "orders", f"m{n}")


def test_list_progress_consumers(cli: Invoke) -> None:
    setup_group(cli)
    cli("consume", "orders", "-g", "billing", "-n", "2", "-w", "5")
    listed = as_json(cli("group", "list", "--json"))
    assert listed == {
        "groups": [
            {
                "topic": "orders", "group": "billing", "lag": 2, "pending": 0, "consumers": 0,
                "oldest_pending_age_seconds": None, "dlq_length": 0,
            }
        ]
    }  # fmt: skip
    assert as_json(cli("group", "list", "orders", "--json")) == listed
    assert "billing" in cli("group", "list").stdout

    progress = as_json(cli("group", "progress", "orders", "billing", "--json"))
    assert (progress["topic"], progress["group"], progress["lag"]) == ("orders", "billing", 2)
    assert [q["queue_id"] for q in progress["queues"]] == [0, 1]
    assert set(progress["queues"][0]) == {
        "queue_id", "length", "last_id", "last_delivered_id", "lag", "pending",
        "oldest_pending_id", "oldest_pending_age_seconds", "consumers", "dead_consumers",
        "dlq_length", "retry_waiting",
    }  # fmt: skip
    assert "LAST DELIVERED" in cli("group", "progress", "orders", "billing").stdout

    consumers = as_json(cli("group", "consumers", "orders", "billing", "--json"))
    assert consumers == {"topic": "orders", "group": "billing", "consumers": []}  # left empty
    cli("group", "consumers", "orders", "billing")

    missing = cli("group", "progress", "orders", "nobody", code=1)
    assert "does not exist" in missing.stderr
    cli("group", "consumers", "orders", "nobody", code=1)


def test_reset_offset(cli: Invoke) -> None:
    setup_group(cli, messages=2)
    time.sleep(0.01)
    cut = str(int(time.time() * 1000))
    time.sleep(0.01)
    cli("send", "orders", "late")
    first = as_json(cli("group", "reset-offset", "orders", "billing", "--to-first", "-y", "--json"))
    assert first["to"] == "first"
    assert [q["entries_read"] for q in first["queues"]] == [0, 0]
    assert as_json(cli("group", "progress", "orders", "billing", "--json"))["lag"] == 3
    at = as_json(
        cli("group", "reset-offset", "orders", "billing", "--to-time", cut, "-y", "--json")
    )
    assert at["to"].startswith("20")
    assert as_json(cli("group", "progress", "orders", "billing", "--json"))["lag"] == 1
    got = cli("consume", "orders", "-g", "billing", "-n", "5", "-w", "0.5", "--json").stdout
    assert [line for line in got.splitlines() if line] and '"body":"late"' in got
    cli("group", "reset-offset", "orders", "billing", "--to-time", "10m", "--yes")
    text = cli("group", "reset-offset", "orders", "billing", "--to-last", "--yes").stdout
    assert "ENTRIES READ" in text
    assert as_json(cli("group", "progress", "orders", "billing", "--json"))["lag"] == 0


def test_reset_offset_usage(cli: Invoke) -> None:
    setup_group(cli, messages=0)
    none = cli("group", "reset-offset", "orders", "billing", "--yes", code=2)
    assert "exactly one" in none.stderr
    cli("group", "reset-offset", "orders", "billing", "--to-first", "--to-last", "-y", code=2)
    bad = cli("group", "reset-offset", "orders", "billing", "--to-time", "yesterday", code=2)
    assert "is not a time" in bad.output
    assert "Traceback" not in bad.output
    cli("group", "reset-offset", "orders", "billing", "--to-first", code=1)  # not confirmed
    cli("group", "reset-offset", "orders", "nobody", "--to-first", "--yes", code=1)


def test_delete(cli: Invoke) -> None:
    setup_group(cli, messages=1)
    cli("group", "delete", "orders", "billing", code=1)
    deleted = as_json(cli("group", "delete", "orders", "billing", "--yes", "--json"))
    assert deleted == {"topic": "orders", "group": "billing", "deleted": True, "queues": 2}
    assert as_json(cli("group", "list", "--json")) == {"groups": []}
    cli("group", "delete", "orders", "billing", "--yes", code=1)
