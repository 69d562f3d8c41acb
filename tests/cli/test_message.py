"""rmq message show|print|query."""

from __future__ import annotations

import time

import redis

from rmq.keys import NamespaceKeys
from tests.cli.conftest import Invoke, as_json

MESSAGE_KEYS = {
    "topic", "queue_id", "offset", "msg_id", "tag", "keys", "properties", "body_type", "body",
    "born_at", "stored_at",
}  # fmt: skip


def send(cli: Invoke, *args: str) -> dict[str, str]:
    doc: dict[str, str] = as_json(cli("send", *args, "--json"))
    return doc


def test_show_by_msg_id_and_by_offset(cli: Invoke) -> None:
    sent = send(cli, "orders", '{"id": 7}', "--type", "json", "-t", "paid", "-k", "order-7")
    shown = as_json(cli("message", "show", "orders", sent["msg_id"], "--json"))
    assert set(shown) == MESSAGE_KEYS
    assert (shown["msg_id"], shown["offset"], shown["queue_id"]) == (
        sent["msg_id"], sent["offset"], sent["queue_id"],
    )  # fmt: skip
    assert (shown["body"], shown["body_type"], shown["tag"], shown["keys"]) == (
        {"id": 7}, "json", "paid", ["order-7"],
    )  # fmt: skip
    by_offset = cli(
        "--json", "message", "show", "orders", "--queue", str(sent["queue_id"]),
        "--offset", sent["offset"],
    )  # fmt: skip
    assert as_json(by_offset) == shown
    text = cli("message", "show", "orders", sent["msg_id"]).stdout
    assert f"msg_id:      {sent['msg_id']}" in text
    assert "keys:        order-7" in text

    assert "no message" in cli("message", "show", "orders", "0" * 32, code=1).stderr
    cli("message", "show", "orders", code=2)
    cli("message", "show", "orders", "--offset", sent["offset"], code=2)
    cli("message", "show", "orders", "--queue", "99", "--offset", "1-1", code=2)


def test_undecodable_entries_are_shown_raw(cli: Invoke, r: redis.Redis, namespace: str) -> None:
    cli("topic", "create", "orders", "-q", "1")
    entry_id = r.xadd(NamespaceKeys(namespace).queue("orders", 0).stream, {"x": "1"}).decode()
    shown = as_json(cli("message", "show", "orders", entry_id, "--json"))
    assert shown["error"] == "entry has no body field 'd'"
    assert shown["raw"] == {"x": "1"}
    printed = cli("message", "print", "orders").stdout
    assert "undecodable" in printed


def test_print(cli: Invoke) -> None:
    cli("topic", "create", "orders", "-q", "2")
    sent = []
    for n in range(5):
        sent.append(send(cli, "orders", f"m{n}"))
        time.sleep(0.003)
    printed = as_json(cli("message", "print", "orders", "--json"))
    assert [m["body"] for m in printed["messages"]] == [f"m{n}" for n in range(5)]
    assert set(printed["messages"][0]) == MESSAGE_KEYS
    two = as_json(cli("message", "print", "orders", "-n", "2", "--json"))["messages"]
    assert [m["body"] for m in two] == ["m0", "m1"]
    queue = sent[0]["queue_id"]
    one = as_json(cli("message", "print", "orders", "--queue", str(queue), "--json"))["messages"]
    assert [m["msg_id"] for m in one] == [s["msg_id"] for s in sent if s["queue_id"] == queue]
    later = as_json(cli("message", "print", "orders", "--from", sent[2]["offset"], "--json"))
    assert [m["body"] for m in later["messages"]] == ["m2", "m3", "m4"]
    until = as_json(cli("message", "print", "orders", "--to", sent[1]["offset"], "--json"))
    assert [m["body"] for m in until["messages"]] == ["m0", "m1"]
    recent = as_json(cli("message", "print", "orders", "--from", "1h", "--json"))
    assert len(recent["messages"]) == 5
    assert "m4" in cli("message", "print", "orders").stdout
    cli("message", "print", "orders", "--from", "tomorrow", code=2)


def test_query_by_key(cli: Invoke) -> None:
    for n in range(6):
        keys = ["-k", "user-1"] if n % 2 else []
        send(cli, "orders", f"m{n}", "-k", f"order-{n}", *keys)
    found = as_json(cli("message", "query", "orders", "--key", "user-1", "--json"))["messages"]
    assert sorted(m["body"] for m in found) == ["m1", "m3", "m5"]
    limited = as_json(cli("message", "query", "orders", "-k", "user-1", "-n", "1", "--json"))
    assert len(limited["messages"]) == 1
    assert "order-4" in cli("message", "query", "orders", "-k", "order-4").stdout
    assert as_json(cli("message", "query", "orders", "-k", "nobody", "--json")) == {
        "topic": "orders",
        "messages": [],
    }
    cli("message", "query", "orders", code=2)  # --key is required
    cli("message", "query", "orders", "-k", "two words", code=2)
