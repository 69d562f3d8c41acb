"""No redis-py exception escapes the public API: every entry point, called against a server that
was stopped, one that now refuses the credentials, and one whose ACL user lost its permissions,
either works or raises an rmq error (`BrokerUnavailable`, `BrokerError`, ...) chained to the
redis-py one. The CLI prints one line for them, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer
from tests.helpers import make_settings

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
TOPIC, GROUP = "api", "g"
PASSWORD = "s3cret-pw"


async def _first(items: AsyncIterator[Any]) -> Any:
    async for item in items:
        return item
    return None


def entry_points(app: rmq.App, received: list[rmq.Message]) -> dict[str, Callable[[], Any]]:
    """Every public call, by name (each a zero-argument callable returning an awaitable)."""
    admin = app.admin
    dlq = app.dead_letters(TOPIC, GROUP)
    producer = app.producer(group="tx-group")
    pc = app.pull_consumer(TOPIC, "pull", start="first")
    msg = received[0]

    async def transaction() -> None:
        async with producer.transaction() as tx:
            await tx.send(TOPIC, "tx")

    async def oneway() -> None:
        app.send_oneway(TOPIC, "one way")
        await app.flush()

    async def pull() -> None:
        async with pc:
            await pc.receive(max_messages=1)

    return {
        "send": lambda: app.send(TOPIC, "x"),
        "send to a new topic": lambda: app.send("brand-new", "x"),
        "send delayed": lambda: app.send(TOPIC, "x", delay=60),
        "send_batch": lambda: app.send_batch(TOPIC, ["a", "b"]),
        "send_async": lambda: app.send_async(TOPIC, "x"),
        "send_oneway + flush": oneway,
        "cancel_delayed": lambda: app.cancel_delayed(TOPIC, "0" * 32),
        "reset_offset": lambda: app.reset_offset(TOPIC, GROUP, "first"),
        "send_in_transaction": lambda: producer.send_in_transaction(
            TOPIC, "x", execute=lambda m, a: rmq.TransactionState.COMMIT
        ),
        "transaction": transaction,
        "pull receive": pull,
        "pull ack": lambda: pc.ack(msg),
        "pull change_invisible_duration": lambda: pc.change_invisible_duration(msg, 5),
        "pull nack": lambda: pc.nack(msg),
        "dlq count": dlq.count,
        "dlq counts": dlq.counts,
        "dlq entries": lambda: dlq.entries(limit=5),
        "dlq get": lambda: dlq.get(0, "0-1"),
        "dlq find": lambda: dlq.find("0" * 32),
        "dlq replay": lambda: dlq.replay(to="group"),
        "dlq purge": dlq.purge,
        "dlq purge_older_than": lambda: dlq.purge_older_than(60),
        "admin server_info": admin.server_info,
        "admin topics": admin.topics,
        "admin topic": lambda: admin.topic(TOPIC),
        "admin create_topic": lambda: admin.create_topic("other", 2),
        "admin update_topic": lambda: admin.update_topic(TOPIC, retention=60.0),
        "admin trim": lambda: admin.trim(TOPIC),
        "admin topic_status": lambda: admin.topic_status(TOPIC),
        "admin groups": admin.groups,
        "admin group_progress": lambda: admin.group_progress(TOPIC, GROUP),
        "admin group_consumers": lambda: admin.group_consumers(TOPIC, GROUP),
        "admin reset_offset": lambda: admin.reset_offset(TOPIC, GROUP, "last"),
        "admin message_at": lambda: admin.message_at(TOPIC, 0, "0-1"),
        "admin find_message": lambda: admin.find_message(TOPIC, msg.msg_id),
        "admin query_key": lambda: admin.query_key(TOPIC, "k"),
        "admin messages": lambda: admin.messages(TOPIC),
        "admin tail": lambda: _first(admin.tail(TOPIC, start="first")),
        "admin send": lambda: admin.send(TOPIC, "x"),
        "admin consume": lambda: _first(admin.consume(TOPIC, GROUP, count=1, wait=0.1)),
        "admin transaction_counts": lambda: admin.transaction_counts(TOPIC),
        "admin pending_transactions": lambda: admin.pending_transactions(TOPIC),
        "admin discarded_transactions": lambda: admin.discarded_transactions(TOPIC, "tx-group"),
        "admin delete_group": lambda: admin.delete_group(TOPIC, GROUP),
        "admin delete_topic": lambda: admin.delete_topic("other"),
    }


async def call_everything(app: rmq.App, received: list[rmq.Message]) -> dict[str, str]:
    """Call every entry point; returns name -> what happened ("ok" or the error's class).
    Fails on anything but an rmq error (or a call that hangs)."""
    outcomes: dict[str, str] = {}
    for name, call in entry_points(app, received).items():
        try:
            with anyio.fail_after(15):
                result = call()
                if isinstance(result, Awaitable):
                    await result
        except rmq.RMQError as exc:
            outcomes[name] = type(exc).__name__
            assert PASSWORD not in str(exc), name
        except BaseException as exc:  # what this test is for
            raise AssertionError(f"{name} raised {type(exc).__module__}.{exc!r}") from exc
        else:
            outcomes[name] = "ok"
    return outcomes


async def prepared(app: rmq.App) -> list[rmq.Message]:
    """A topic, a group, a message received by a pull consumer (to ack later)."""
    await app.admin.create_topic(TOPIC, 2)
    await app.send(TOPIC, "first", keys=["k"])
    async with app.pull_consumer(TOPIC, "pull", start="first") as pc:
        received = await pc.receive(max_messages=1)
    async with app.pull_consumer(TOPIC, GROUP, start="first"):
        pass
    assert received
    return received


def short(url: str, namespace: str) -> rmq.Settings:
    return make_settings(
        url, namespace, send_timeout=0.5, startup_timeout=0.5, connect_timeout=0.5,
        socket_timeout=1.0, block_seconds=0.2, backoff_cap=0.1,
    )  # fmt: skip


@pytest.fixture
def acl_server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    server = server_factory().start()
    admin = redis.Redis(port=server.port)
    admin.execute_command("ACL", "SETUSER", "app", "on", f">{PASSWORD}", "~*", "&*", "+@all")
    admin.close()
    return server


async def test_stopped_server(server_factory: type[EmbeddedServer], namespace: str) -> None:
    server = server_factory().start()
    async with rmq.App(short(server.url, namespace)) as app:
        received = await prepared(app)
        server.kill()
        outcomes = await call_everything(app, received)
    assert set(outcomes.values()) <= {"BrokerUnavailable", "ok"}, outcomes
    assert outcomes["send"] == outcomes["send to a new topic"] == "BrokerUnavailable"
    assert outcomes["admin topics"] == outcomes["dlq entries"] == "BrokerUnavailable"
    with pytest.raises(rmq.BrokerUnavailable):
        async with rmq.App(short(server.url, namespace)):
            pass


async def test_server_refusing_the_credentials(acl_server: EmbeddedServer, namespace: str) -> None:
    url = f"redis://app:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    admin = redis.Redis(port=acl_server.port)
    async with rmq.App(short(url, namespace)) as app:
        received = await prepared(app)
        admin.execute_command("ACL", "SETUSER", "app", "resetpass", ">another-password")
        admin.execute_command("CLIENT", "KILL", "USER", "app")
        outcomes = await call_everything(app, received)
    admin.close()
    assert "BrokerError" in outcomes.values(), outcomes
    assert set(outcomes.values()) <= {"BrokerError", "BrokerUnavailable", "ok"}, outcomes
    with pytest.raises(rmq.BrokerError, match="refused the credentials"):
        async with rmq.App(short(url, namespace)):
            pass


async def test_acl_user_without_permissions(acl_server: EmbeddedServer, namespace: str) -> None:
    url = f"redis://app:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    admin = redis.Redis(port=acl_server.port)
    async with rmq.App(short(url, namespace)) as app:
        received = await prepared(app)
        admin.execute_command("ACL", "SETUSER", "app", "-@all", "+@connection")
        outcomes = await call_everything(app, received)
    admin.close()
    refused = {name for name, what in outcomes.items() if what == "BrokerError"}
    assert {"send", "send to a new topic", "admin topics", "dlq entries"} <= refused, outcomes
    assert set(outcomes.values()) <= {"BrokerError", "ok"}, outcomes


def test_cli_prints_one_line_for_an_acl_refusal(acl_server: EmbeddedServer, namespace: str) -> None:
    admin = redis.Redis(port=acl_server.port)
    admin.execute_command("ACL", "SETUSER", "weak", "on", ">weak-pw", "~*", "+@connection")
    admin.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    env.update(
        RMQ_REDIS_URL=f"redis://weak:weak-pw@127.0.0.1:{acl_server.port}/0", RMQ_NAMESPACE=namespace
    )
    for command in (["topic", "list"], ["group", "list"], ["dlq", "list", TOPIC, GROUP]):
        done = subprocess.run(
            [sys.executable, "-m", "rmq", *command],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1, (command, done.stderr)
        assert len(lines) == 1 and "lacks a permission" in lines[0], (command, lines)
        assert "weak-pw" not in done.stderr and "Traceback" not in done.stderr
