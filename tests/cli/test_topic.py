"""rmq topic create|delete|list|status."""

from __future__ import annotations

import redis

from rmq.keys import NamespaceKeys
from tests.cli.conftest import Invoke, as_json


def test_create_list_status(cli: Invoke) -> None:
    out = cli("topic", "create", "orders", "--queues", "3")
    assert out.stdout.strip() == "topic orders created 3 queues"
    assert as_json(cli("topic", "create", "orders", "-q", "3", "--json")) == {
        "topic": "orders", "queues": 3, "created": False,
        "retention_seconds": None, "max_len": None, "max_age_seconds": None,
        "dlq_retention_seconds": None,
    }  # fmt: skip
    cli("topic", "create", "audit")
    listed = as_json(cli("topic", "list", "--json"))
    assert [(t["name"], t["queues"]) for t in listed["topics"]] == [("audit", 4), ("orders", 3)]
    assert listed["topics"][0]["created_at"].endswith("+00:00")
    text = cli("topic", "list").stdout
    assert "orders" in text and "audit" in text

    cli("send", "orders", "hello")
    status = as_json(cli("--json", "topic", "status", "orders"))
    assert status["topic"] == "orders"
    assert status["length"] == 1
    assert [q["queue_id"] for q in status["queues"]] == [0, 1, 2]
    assert set(status["queues"][0]) == {
        "queue_id", "length", "first_id", "last_id", "delayed", "half",
    }  # fmt: skip
    (filled,) = [q for q in status["queues"] if q["length"]]
    assert filled["first_id"] == filled["last_id"]
    assert "FIRST ID" in cli("topic", "status", "orders").stdout


def test_bad_arguments_are_usage_errors(cli: Invoke) -> None:
    cli("topic", "create", "orders", "-q", "2")
    conflict = cli("topic", "create", "orders", "-q", "5", code=2)
    assert "exists with 2 queues" in conflict.stderr
    assert "Traceback" not in conflict.output
    bad = cli("topic", "create", "no spaces", code=2)
    assert "letters, digits" in bad.stderr
    cli("topic", "create", "x", "--queues", "0", code=2)
    cli("topic", "create", code=2)
    missing = cli("topic", "status", "nope", code=1)
    assert "does not exist" in missing.stderr


def test_delete_needs_yes_or_a_prompt(cli: Invoke, r: redis.Redis, namespace: str) -> None:
    cli("send", "orders", "hello")
    refused = cli("topic", "delete", "orders", code=1)  # no answer on stdin: no
    assert "aborted" in refused.stderr
    cli("topic", "delete", "orders", input="n\n", code=1)
    assert as_json(cli("topic", "list", "--json"))["topics"][0]["name"] == "orders"
    prompted = cli("topic", "delete", "orders", input="y\n")
    assert "topic orders deleted" in prompted.stdout
    assert r.hget(NamespaceKeys(namespace).topics, "orders") is None
    cli("send", "orders", "again")
    deleted = as_json(cli("topic", "delete", "orders", "--yes", "--json"))
    assert deleted["deleted"] is True and deleted["keys_removed"] >= 2
    cli("topic", "delete", "orders", "--yes", code=1)


def test_retention_options_update_status_and_trim(cli: Invoke) -> None:
    created = as_json(cli("topic", "create", "orders", "-q", "2", "--retention", "3d", "--json"))
    assert created["retention_seconds"] == 3 * 86400.0
    assert created["max_len"] is None
    status = as_json(cli("topic", "status", "orders", "--json"))
    assert (status["retention_seconds"], status["max_len"], status["max_age_seconds"]) == (
        3 * 86400.0, None, None,
    )  # fmt: skip
    assert "retention 3d" in cli("topic", "status", "orders").stdout
    updated = as_json(
        cli("topic", "update", "orders", "--retention", "0", "--max-len", "2", "--json")
    )
    assert (updated["retention_seconds"], updated["max_len"]) == (0.0, 2)
    cli("send", "orders", "a", "--sharding-key", "k")
    cli("send", "orders", "b", "--sharding-key", "k")
    cli("send", "orders", "c", "--sharding-key", "k")

    dry = as_json(cli("topic", "trim", "orders", "--dry-run", "--json"))
    assert dry["dry_run"] is True
    assert (dry["removed"], dry["removed_unacked"], dry["groups"]) == (3, 0, [])
    rows = dry["streams"]
    assert [(s["queue_id"], s["stream"]) for s in rows] == [(0, "queue"), (1, "queue")]
    assert set(rows[0]) == {
        "queue_id", "stream", "removed", "removed_unacked", "kept", "bound", "held_by",
    }  # fmt: skip
    assert as_json(cli("topic", "status", "orders", "--json"))["length"] == 3
    done = as_json(cli("topic", "trim", "orders", "--json"))
    assert (done["dry_run"], done["removed"]) == (False, 3)
    assert as_json(cli("topic", "status", "orders", "--json"))["length"] == 0
    assert "removed 0" in cli("topic", "trim", "orders").stdout

    dlq = as_json(cli("topic", "update", "orders", "--dlq-retention", "7d", "--json"))
    assert dlq["dlq_retention_seconds"] == 7 * 86400.0
    assert as_json(cli("topic", "status", "orders", "--json"))["dlq_retention_seconds"] == 604800
    assert "dead letters 7d" in cli("topic", "status", "orders").stdout
    off = cli("topic", "update", "orders", "--dlq-retention", "off", "--json")
    assert as_json(off)["dlq_retention_seconds"] == 0.0
    back = cli("topic", "update", "orders", "--dlq-retention", "default", "--json")
    assert as_json(back)["dlq_retention_seconds"] is None
    cli("topic", "update", "orders", "--dlq-retention", "soon", code=2)
    reset = as_json(cli("topic", "update", "orders", "--retention", "default", "--json"))
    assert reset["retention_seconds"] is None
    cli("topic", "update", "orders", code=2)
    cli("topic", "update", "orders", "--max-len", "many", code=2)
    cli("topic", "update", "nope", "--retention", "1h", code=1)
    cli("topic", "trim", "nope", code=1)
