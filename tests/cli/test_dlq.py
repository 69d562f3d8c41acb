"""rmq dlq count|list|show|replay|purge, and rmq send --delay."""

from __future__ import annotations

import anyio

import rmq
from tests.cli.conftest import Invoke, as_json, run_rmq
from tests.helpers import make_settings, running, wait_until


async def dead_letter(redis_url: str, namespace: str, bodies: list[str]) -> list[rmq.SendResult]:
    app = rmq.App(make_settings(redis_url, namespace))

    @app.consumer("orders", group="billing")
    async def reject(msg: rmq.Message) -> None:
        raise rmq.Reject(f"bad {msg.body}")

    async with running(app):
        sent = await app.send_batch("orders", bodies)
        dlq = app.dead_letters("orders", "billing")
        for _ in range(500):
            if await dlq.count() == len(bodies):
                break
            await anyio.sleep(0.01)
    return sent


def test_list_show_replay_purge(
    cli: Invoke, env: dict[str, str], redis_url: str, namespace: str
) -> None:
    sent = anyio.run(dead_letter, redis_url, namespace, ["a", "b", "c"])
    counted = as_json(cli("dlq", "count", "orders", "billing", "--json"))
    assert counted["total"] == 3
    listed = as_json(cli("dlq", "list", "orders", "billing", "--json"))["dead_letters"]
    assert [x["message"]["body"] for x in listed] == ["a", "b", "c"]
    assert {(x["reason"], x["error"]) for x in listed} == {
        ("rejected", "bad a"),
        ("rejected", "bad b"),
        ("rejected", "bad c"),
    }
    text = cli("dlq", "list", "orders", "billing").stdout
    assert "rejected" in text and "bad a" in text
    assert f"{listed[0]['queue_id']}/{listed[0]['id']}" in text
    entry = f"{listed[0]['queue_id']}/{listed[0]['id']}"
    shown = as_json(cli("dlq", "show", "orders", "billing", entry, "--json"))["dead_letters"]
    assert shown[0]["msg_id"] == sent[0].msg_id
    by_id = as_json(cli("dlq", "show", "orders", "billing", sent[1].msg_id, "--json"))
    assert by_id["dead_letters"][0]["message"]["body"] == "b"
    cli("dlq", "show", "orders", "billing", "0/1-1", code=1)  # not found

    dry = as_json(cli("dlq", "replay", "orders", "billing", entry, "--dry-run", "--json"))
    assert dry["dry_run"] and len(dry["replayed"]) == 1
    assert as_json(cli("dlq", "count", "orders", "billing", "--json"))["total"] == 3
    cli("dlq", "replay", "orders", "billing", entry, code=1, input="n\n")  # declined: nothing done
    assert as_json(cli("dlq", "count", "orders", "billing", "--json"))["total"] == 3
    done = as_json(cli("dlq", "replay", "orders", "billing", entry, "--yes", "--json"))
    assert len(done["replayed"]) == 1
    assert as_json(cli("dlq", "count", "orders", "billing", "--json"))["total"] == 2

    cli("dlq", "purge", "orders", "billing", code=2)  # neither entries nor --all
    cli("dlq", "purge", "orders", "billing", "--all", "--older-than", "1h", code=2)
    cli("dlq", "purge", "orders", "billing", "--older-than", "soon", code=2)
    kept = cli("dlq", "purge", "orders", "billing", "--older-than", "1h", "--yes", "--json")
    assert as_json(kept)["purged"] == 0
    aged = cli("dlq", "purge", "orders", "billing", "--older-than", "0s", "--dry-run", "--json")
    assert as_json(aged) == {"topic": "orders", "group": "billing", "dry_run": True, "purged": 2}
    assert (
        as_json(cli("dlq", "purge", "orders", "billing", "--all", "--dry-run", "--json"))["purged"]
        == 2
    )
    proc = run_rmq(["dlq", "purge", "orders", "billing", "--all", "--yes", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    assert as_json(cli("dlq", "count", "orders", "billing", "--json"))["total"] == 0


def test_send_with_delay(cli: Invoke, redis_url: str, namespace: str) -> None:
    doc = as_json(cli("send", "later", "x", "--delay", "300ms", "--json"))
    assert doc["offset"] is None and doc["deliver_at"]  # not stored yet: null, never ""
    assert "scheduled" in cli("send", "later", "y", "--delay-level", "1").stdout
    cli("send", "later", "z", "--delay", "soon", code=2)
    cli("send", "later", "z", "--delay-level", "19", code=2)

    async def receive() -> list[str]:
        worker = rmq.App(make_settings(redis_url, namespace))
        got: list[str] = []

        @worker.consumer("later", group="g", start="first")
        async def handle(msg: rmq.Message) -> None:
            got.append(msg.body)

        async with running(worker):  # its promoter delivers the delayed messages
            await wait_until(lambda: sorted(got) == ["x", "y"], timeout=5)
        return got

    assert sorted(anyio.run(receive)) == ["x", "y"]
