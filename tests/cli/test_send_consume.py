"""rmq send and rmq consume (as a group, or tailing)."""

from __future__ import annotations

import base64
import json

from tests.cli.conftest import Invoke, as_json


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_send_variants(cli: Invoke) -> None:
    text = cli("send", "orders", "hello").stdout
    assert text.startswith("sent ") and " to orders[" in text
    doc = as_json(
        cli(
            "send", "orders", "x", "--tag", "t1", "--key", "a", "--key", "b", "--property",
            "region=eu", "-p", "tier=gold", "--sharding-key", "user-1", "--json",
        )
    )  # fmt: skip
    assert set(doc) == {"status", "msg_id", "topic", "queue_id", "offset", "deliver_at"}
    assert doc["status"] == "send_ok"
    shown = as_json(cli("message", "show", "orders", doc["msg_id"], "--json"))
    assert (shown["tag"], shown["keys"], shown["properties"]) == (
        "t1", ["a", "b"], {"region": "eu", "tier": "gold"},
    )  # fmt: skip
    again = as_json(cli("send", "orders", "y", "--sharding-key", "user-1", "--json"))
    assert again["queue_id"] == doc["queue_id"]

    from_stdin = as_json(cli("send", "orders", "--json", input="line one\n"))
    dash = as_json(cli("send", "orders", "-", "--type", "bytes", "--json", input=b"\x00\xff"))
    parsed = as_json(cli("send", "orders", "[1, 2]", "--type", "json", "--json"))
    bodies = {
        m["msg_id"]: (m["body_type"], m["body"])
        for m in as_json(cli("message", "print", "orders", "--json"))["messages"]
    }
    assert bodies[from_stdin["msg_id"]] == ("str", "line one\n")
    assert bodies[dash["msg_id"]] == ("bytes", base64.b64encode(b"\x00\xff").decode())
    assert bodies[parsed["msg_id"]] == ("json", [1, 2])


def test_send_usage_errors(cli: Invoke) -> None:
    assert "not JSON" in cli("send", "orders", "{nope", "--type", "json", code=2).stderr
    cli("send", "orders", "x", "--property", "novalue", code=2)
    cli("send", "orders", "x", "--type", "xml", code=2)
    cli("send", "orders", "x", "--tag", "two words", code=2)
    cli("send", "bad topic", "x", code=2)
    cli("send", code=2)


def test_consume_as_group(cli: Invoke) -> None:
    for n in range(3):
        cli("send", "orders", f"m{n}", "-k", f"k{n}")
    new_group = cli("consume", "orders", "-g", "late", "-w", "0.2", "--json").stdout
    assert new_group == ""  # a new group starts at the last message by default
    got = lines(
        cli("consume", "orders", "-g", "early", "--from", "first", "-n", "2", "--json").stdout
    )
    assert len(got) == 2
    assert {"topic", "queue_id", "offset", "msg_id", "body", "delivery_count"} <= set(got[0])
    rest = cli("consume", "orders", "-g", "early", "-n", "5", "-w", "0.3").stdout.splitlines()
    assert len(rest) == 1 and rest[0].startswith("orders[")
    progress = as_json(cli("group", "progress", "orders", "early", "--json"))
    assert (progress["lag"], progress["pending"]) == (0, 0)
    cli("consume", "orders", "-g", "early", "--from", "1h", code=2)


def test_tail(cli: Invoke) -> None:
    for n in range(3):
        cli("send", "orders", f"m{n}")
    first = lines(cli("consume", "orders", "--from", "first", "-n", "2", "--json").stdout)
    assert [m["body"] for m in first] == ["m0", "m1"]
    waited = cli("consume", "orders", "-w", "0.2").stdout
    assert waited == ""  # only new messages by default; none came within --wait
    recent = cli("consume", "orders", "--from", "1h", "-w", "0.3").stdout.splitlines()
    assert len(recent) == 3
    cli("consume", "orders", "--from", "whenever", code=2)
