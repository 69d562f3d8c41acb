"""Transactional messages against a real Redis: half messages, commit and rollback, the local
transaction's outcomes (including exceptions and timeouts), the check-back, several queues, delays.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import pytest
import redis
from prometheus_client import REGISTRY
from redis.crc import key_slot

import rmq
from rmq.keys import NamespaceKeys
from rmq.transaction import CheckBack
from tests.helpers import make_settings, running, wait_until
from tests.proxy import FlakyProxy

COMMIT, ROLLBACK, UNKNOWN = (
    rmq.TransactionState.COMMIT,
    rmq.TransactionState.ROLLBACK,
    rmq.TransactionState.UNKNOWN,
)
GROUP = "order-service"
# Short check-back settings, so check-back scenarios take a fraction of a second.
FAST = {
    "transaction_check_immunity": 0.3,
    "transaction_check_interval": 0.4,
    "transaction_max_checks": 3,
}


@pytest.fixture
def settings(redis_url: str, namespace: str) -> rmq.Settings:
    return make_settings(redis_url, namespace, **FAST)


def commit_it(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
    return COMMIT


def not_a_state(msg: rmq.Message, arg: Any) -> Any:
    return "COMMIT!"


class Inbox:
    """A consumer of `topics` (group "g", from the first message) that keeps what it gets."""

    def __init__(self, app: rmq.App, *topics: str) -> None:
        self.messages: list[rmq.Message] = []
        self.seen_at: dict[str, float] = {}
        for topic in topics:
            app.consumer(topic, group="g", start="first")(self.handle)

    async def handle(self, msg: rmq.Message) -> None:
        self.messages.append(msg)
        self.seen_at[msg.msg_id] = time.time()

    @property
    def ids(self) -> Counter[str]:
        return Counter(m.msg_id for m in self.messages)

    @property
    def bodies(self) -> list[Any]:
        return [m.body for m in self.messages]


def half_count(r: redis.Redis, namespace: str, topic: str, queues: int = 4) -> int:
    keys = NamespaceKeys(namespace)
    return sum(int(r.zcard(keys.queue(topic, q).half)) for q in range(queues))


def stream_ids(r: redis.Redis, namespace: str, topic: str, queues: int = 4) -> list[str]:
    keys = NamespaceKeys(namespace)
    out: list[str] = []
    for q in range(queues):
        out += [f[b"i"].decode() for _, f in r.xrange(keys.queue(topic, q).stream)]
    return out


def counted(topic: str, outcome: str) -> float:
    labels = {"topic": topic, "outcome": outcome}
    return REGISTRY.get_sample_value("rmq_transactions_total", labels) or 0.0


# ---------------------------------------------------------------------- send_in_transaction


async def test_commit_delivers_once(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    inbox = Inbox(app, "tx-commit")
    seen: list[tuple[rmq.Message, Any]] = []

    async def local_tx(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
        seen.append((msg, arg))
        assert half_count(r, namespace, "tx-commit") == 1  # prepared, not visible
        return COMMIT

    producer = app.producer(group=GROUP)
    async with running(app):
        result = await producer.send_in_transaction(
            "tx-commit", {"order": 42}, execute=local_tx, arg="the order", tag="paid",
            keys=["order-42"], properties={"region": "eu"},
        )  # fmt: skip
        await wait_until(lambda: len(inbox.messages) == 1, timeout=5)
    assert isinstance(result, rmq.TransactionSendResult)
    assert result.local_state is COMMIT and result.offset and result.deliver_at is None
    msg, arg = seen[0]
    assert arg == "the order"
    assert (msg.msg_id, msg.topic, msg.queue_id, msg.group) == (
        result.msg_id, "tx-commit", result.queue_id, GROUP,
    )  # fmt: skip
    assert (msg.body, msg.tag, msg.keys, msg.properties) == (
        {"order": 42}, "paid", ["order-42"], {"region": "eu"},
    )  # fmt: skip
    got = inbox.messages[0]
    assert (got.msg_id, got.offset, got.body, got.tag, got.keys, got.properties) == (
        result.msg_id, result.offset, {"order": 42}, "paid", ["order-42"], {"region": "eu"},
    )  # fmt: skip
    assert half_count(r, namespace, "tx-commit") == 0


async def test_rollback_is_never_delivered(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    inbox = Inbox(app, "tx-rb")
    producer = app.producer(group=GROUP)
    before = counted("tx-rb", "rollback")
    async with running(app):
        result = await producer.send_in_transaction("tx-rb", "no", execute=lambda m, a: ROLLBACK)
        await app.send("tx-rb", "marker")
        await wait_until(lambda: "marker" in inbox.bodies, timeout=5)
        await anyio.sleep(0.5)  # past the immunity time: no check-back brings it back
    assert (result.local_state, result.offset) == (ROLLBACK, "")
    assert inbox.bodies == ["marker"]
    assert half_count(r, namespace, "tx-rb") == 0
    assert result.msg_id not in stream_ids(r, namespace, "tx-rb")
    assert counted("tx-rb", "rollback") == before + 1


@pytest.mark.parametrize("answer", [COMMIT, ROLLBACK])
async def test_unknown_then_the_checker_decides(
    app: rmq.App, r: redis.Redis, namespace: str, answer: rmq.TransactionState
) -> None:
    inbox = Inbox(app, "tx-unk")
    asked: list[rmq.Message] = []

    def check(msg: rmq.Message) -> rmq.TransactionState:
        asked.append(msg)
        return UNKNOWN if len(asked) == 1 else answer

    producer = app.producer(group=GROUP, checker=check)
    async with running(app):
        started = time.monotonic()
        result = await producer.send_in_transaction(
            "tx-unk", {"n": 1}, execute=lambda m, a: UNKNOWN, keys=["k1"]
        )
        assert result.local_state is UNKNOWN and result.offset == ""
        await wait_until(lambda: len(asked) == 2, timeout=5)
        took = time.monotonic() - started
        if answer is COMMIT:
            await wait_until(lambda: len(inbox.messages) == 1, timeout=5)
        await wait_until(lambda: half_count(r, namespace, "tx-unk") == 0, timeout=5)
    assert took >= 0.3 + 0.4 - 0.05, "immunity, then one interval between the two checks"
    assert [m.delivery_count for m in asked] == [1, 2], "the check number"
    assert {m.msg_id for m in asked} == {result.msg_id}
    assert (asked[0].body, asked[0].keys, asked[0].group) == ({"n": 1}, ["k1"], GROUP)
    assert inbox.ids == (Counter({result.msg_id: 1}) if answer is COMMIT else Counter())


async def test_none_counts_as_unknown(app: rmq.App) -> None:
    producer = app.producer(group=GROUP)
    async with app:
        result = await producer.send_in_transaction("tx-none", 1, execute=lambda m, a: None)
    assert result.local_state is UNKNOWN


async def test_a_raising_local_transaction_leaves_the_half(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    inbox = Inbox(app, "tx-raise")
    decided: list[str] = []

    async def check(msg: rmq.Message) -> rmq.TransactionState:
        decided.append(msg.msg_id)
        return COMMIT

    def local_tx(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
        decided.append("local")
        raise RuntimeError("database down")

    producer = app.producer(group=GROUP, checker=check)
    async with running(app):
        with pytest.raises(RuntimeError, match="database down") as caught:
            await producer.send_in_transaction("tx-raise", "x", execute=local_tx)
        assert half_count(r, namespace, "tx-raise") == 1
        await wait_until(lambda: len(inbox.messages) == 1, timeout=5)
    assert any("left for the check-back" in note for note in caught.value.__notes__)
    assert decided[0] == "local" and decided[1] == inbox.messages[0].msg_id


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_local_transaction_past_its_timeout(
    app: rmq.App, r: redis.Redis, namespace: str, kind: str
) -> None:
    finished = threading.Event()

    async def slow_async(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
        try:
            await anyio.sleep(5)
        finally:
            finished.set()  # cancelled at the timeout
        return COMMIT

    def slow_sync(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
        finished.wait(5)  # abandoned at the timeout; released below
        return COMMIT

    producer = app.producer(group=GROUP)
    async with app:
        started = time.monotonic()
        result = await producer.send_in_transaction(
            "tx-slow", "x", execute=slow_async if kind == "async" else slow_sync,
            execute_timeout=0.2,
        )  # fmt: skip
        took = time.monotonic() - started
        finished.set()
    assert result.local_state is UNKNOWN and result.offset == ""
    assert 0.2 <= took < 1.5
    assert half_count(r, namespace, "tx-slow") == 1


async def test_the_default_timeout_is_half_the_immunity(app: rmq.App) -> None:
    producer = app.producer(group=GROUP)

    async def slow(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
        await anyio.sleep(5)
        return COMMIT

    async with app:
        started = time.monotonic()
        result = await producer.send_in_transaction("tx-slow2", "x", execute=slow)
    assert result.local_state is UNKNOWN
    assert 0.15 <= time.monotonic() - started < 1.0


async def test_bad_input(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    with pytest.raises(rmq.ConfigError, match="producer group"):
        app.producer(checker=lambda m: COMMIT)
    with pytest.raises(rmq.ConfigError, match="callable"):
        app.producer(group=GROUP, checker="yes")  # type: ignore[arg-type]
    plain = app.producer()
    producer = app.producer(group=GROUP)
    async with app:
        with pytest.raises(rmq.ConfigError, match="producer group"):
            await plain.send_in_transaction("tx-bad", 1, execute=commit_it)
        with pytest.raises(rmq.ConfigError, match="producer group"):
            plain.transaction()
        with pytest.raises(rmq.ConfigError, match="execute must be callable"):
            await producer.send_in_transaction("tx-bad", 1, execute=None)  # type: ignore[arg-type]
        with pytest.raises(rmq.ConfigError, match="execute_timeout"):
            await producer.send_in_transaction("tx-bad", 1, execute=commit_it, execute_timeout=0)
        with pytest.raises(rmq.ConfigError, match="at most one of delay"):
            await producer.send_in_transaction(
                "tx-bad", 1, execute=commit_it, delay=1, delay_level=1
            )
        with pytest.raises(rmq.InvalidName):
            await producer.send_in_transaction("tx bad", 1, execute=commit_it)
        assert half_count(r, namespace, "tx-bad") == 0
        with pytest.raises(rmq.ConfigError, match=r"must return rmq\.TransactionState"):
            await producer.send_in_transaction("tx-bad", 1, execute=not_a_state)
        assert half_count(r, namespace, "tx-bad") == 1, "left for the check-back"
    with pytest.raises(rmq.ProducerClosed):
        await producer.send_in_transaction("tx-bad", 1, execute=commit_it)


async def test_retries_after_lost_replies_never_duplicate(
    server_factory: type, namespace: str
) -> None:
    """The prepare's reply is lost, then the commit's: both are retried, nothing is doubled."""
    server = server_factory().start()
    async with FlakyProxy(server.port) as proxy:
        async with rmq.App(make_settings(proxy.url, namespace, **FAST)) as app:
            producer = app.producer(group=GROUP)
            await producer.send_in_transaction("tx-net", "warm-up", execute=commit_it)

            def local_tx(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
                proxy.drop_reply("EVALSHA")  # the commit's reply
                return COMMIT

            proxy.drop_reply("EVALSHA")  # the prepare's reply
            result = await producer.send_in_transaction(
                "tx-net", "important", execute=local_tx, sharding_key="k"
            )
            assert proxy.fired == 2
    client = redis.Redis(port=server.port)
    entries = client.xrange(NamespaceKeys(namespace).queue("tx-net", result.queue_id).stream)
    client.close()
    assert [f[b"i"].decode() for _, f in entries].count(result.msg_id) == 1
    assert result.offset in {e[0].decode() for e in entries}


# ---------------------------------------------------------------------- transaction()


async def test_a_transaction_of_several_messages(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    inbox = Inbox(app, "tx-a", "tx-b")
    producer = app.producer(group=GROUP)
    before = counted("tx-a", "commit")
    async with running(app):
        async with producer.transaction() as tx:
            sent = [
                await tx.send("tx-a", "a0", keys=["order-1"], sharding_key="s"),
                await tx.send("tx-a", "a1", tag="t", properties={"p": "1"}, sharding_key="s"),
                await tx.send("tx-a", "a2", selector=lambda n, m: 3),
                await tx.send("tx-b", "b0"),
            ]
            assert all(s.offset == "" for s in sent)
            assert half_count(r, namespace, "tx-a") == 3
            await anyio.sleep(0.1)
            assert inbox.messages == [], "nothing visible before the commit"
        await wait_until(lambda: len(inbox.messages) == 4, timeout=5)
    assert tx.state is COMMIT
    assert [x.msg_id for x in tx.results] == [x.msg_id for x in sent] == tx.msg_ids
    offsets = {m.msg_id: m.offset for m in inbox.messages}
    assert all(offsets[x.msg_id] == x.offset for x in tx.results)
    assert sent[0].queue_id == sent[1].queue_id and sent[2].queue_id == 3
    by_body = {m.body: m for m in inbox.messages}
    assert by_body["a1"].tag == "t" and by_body["a1"].properties == {"p": "1"}
    assert by_body["a0"].keys == ["order-1"]
    assert by_body["a0"].offset < by_body["a1"].offset, "same queue: in send order"
    assert counted("tx-a", "commit") == before + 3
    assert half_count(r, namespace, "tx-a") + half_count(r, namespace, "tx-b") == 0


async def test_an_exception_rolls_the_transaction_back(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    inbox = Inbox(app, "tx-x")
    producer = app.producer(group=GROUP)
    async with running(app):
        with pytest.raises(KeyError):
            async with producer.transaction() as tx:
                await tx.send("tx-x", "one")
                await tx.send("tx-x", "two", delay=0.1)
                raise KeyError("out of stock")
        await app.send("tx-x", "marker")
        await wait_until(lambda: "marker" in inbox.bodies, timeout=5)
        await anyio.sleep(0.6)  # past the immunity time and the delay
    assert tx.state is ROLLBACK
    assert inbox.bodies == ["marker"]
    assert half_count(r, namespace, "tx-x") == 0


async def test_explicit_commit_and_rollback(app: rmq.App) -> None:
    producer = app.producer(group=GROUP)
    async with app:
        async with producer.transaction() as tx:
            await tx.send("tx-e", 1)
            await tx.rollback()
            await tx.rollback()  # idempotent
            with pytest.raises(rmq.TransactionStateError, match="rollback already"):
                await tx.send("tx-e", 2)
            with pytest.raises(rmq.TransactionStateError, match="rollback already"):
                await tx.commit()
        assert tx.state is ROLLBACK
        async with producer.transaction() as tx2:
            await tx2.send("tx-e", 3)
            results = await tx2.commit()
            assert await tx2.commit() == results  # idempotent
        assert tx2.state is COMMIT
        async with producer.transaction() as empty:
            pass
        assert empty.state is COMMIT and empty.results == []


async def test_commit_after_a_check_back_rollback(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    """The block outlived the immunity time and the checker said ROLLBACK: the commit fails and
    the whole transaction is rolled back, on every queue."""
    producer = app.producer(group=GROUP, checker=lambda m: ROLLBACK)
    async with app:
        with pytest.raises(rmq.TransactionStateError, match="rolled back already"):
            async with producer.transaction() as tx:
                await tx.send("tx-late", 1, selector=lambda n, m: 0)
                await tx.send("tx-late", 2, selector=lambda n, m: 1)
                # wait until the checker rolled back queue 0's message (maybe queue 1's too)
                keys = NamespaceKeys(namespace)
                await wait_until(lambda: r.zcard(keys.queue("tx-late", 0).half) == 0, timeout=5)
        assert tx.state is ROLLBACK
    assert half_count(r, namespace, "tx-late") == 0
    assert stream_ids(r, namespace, "tx-late") == []


async def test_a_refused_send_stores_nothing(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    producer = app.producer(group=GROUP)
    async with app:
        async with producer.transaction() as tx:
            await tx.send("tx-f", "ok")
            with pytest.raises(rmq.MessageTooLarge):
                await tx.send("tx-f", b"x" * (app.settings.max_body_bytes + 1))
        assert [x.msg_id for x in tx.results] == tx.msg_ids[:1]
    assert tx.state is COMMIT
    assert half_count(r, namespace, "tx-f") == 0


async def test_a_send_that_may_have_failed_prevents_the_commit(
    server_factory: type, namespace: str
) -> None:
    """A prepare that failed after it may have been stored: the transaction cannot commit (it
    rolls back instead), even if the block goes on."""
    server = server_factory().start()
    settings = make_settings("redis://x", namespace, send_retries=0, **FAST)
    async with FlakyProxy(server.port) as proxy:
        async with rmq.App(settings.replace(redis_url=proxy.url)) as app:
            producer = app.producer(group=GROUP)
            with pytest.raises(rmq.TransactionStateError, match="a send in this transaction"):
                async with producer.transaction() as tx:
                    await tx.send("tx-d", "first")
                    proxy.drop_reply("EVALSHA")
                    with pytest.raises(rmq.BrokerUnavailable, match="may or may not"):
                        await tx.send("tx-d", "second")
            assert tx.state is ROLLBACK
    client = redis.Redis(port=server.port)
    assert half_count(client, namespace, "tx-d") == 0
    assert stream_ids(client, namespace, "tx-d") == []
    client.close()


# ---------------------------------------------------------------------- the check-back


async def test_a_worker_checker_resolves_another_producers_halves(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    """`@app.transaction_checker` in a worker app (no consumers needed) answers for the group."""
    worker = rmq.App(settings)
    asked: list[str] = []

    @worker.transaction_checker(group=GROUP)
    async def check(msg: rmq.Message) -> rmq.TransactionState:
        asked.append(msg.msg_id)
        return COMMIT if msg.body["ok"] else ROLLBACK

    with pytest.raises(rmq.ConfigError, match="already has a transaction checker"):
        worker.transaction_checker(group=GROUP)(check)
    sender = rmq.App(settings)
    producer = sender.producer(group=GROUP)  # no checker of its own
    async with sender:
        good = await producer.send_in_transaction("tx-w", {"ok": True}, execute=lambda m, a: None)
        bad = await producer.send_in_transaction("tx-w", {"ok": False}, execute=lambda m, a: None)
    async with running(worker):
        await wait_until(lambda: half_count(r, namespace, "tx-w") == 0, timeout=5)
    assert sorted(asked) == sorted([good.msg_id, bad.msg_id])
    assert stream_ids(r, namespace, "tx-w") == [good.msg_id]


async def test_two_checkers_never_ask_about_one_message_at_once(
    settings: rmq.Settings, r: redis.Redis, namespace: str
) -> None:
    running_now: set[str] = set()
    overlaps: list[str] = []
    checks: list[tuple[str, str]] = []

    def checker(name: str) -> Callable[[rmq.Message], Any]:
        async def check(msg: rmq.Message) -> rmq.TransactionState:
            if msg.msg_id in running_now:
                overlaps.append(msg.msg_id)
            running_now.add(msg.msg_id)
            checks.append((name, msg.msg_id))
            await anyio.sleep(0.05)
            running_now.discard(msg.msg_id)
            return COMMIT if msg.delivery_count >= 2 else UNKNOWN

        return check

    apps = [rmq.App(settings), rmq.App(settings)]
    producers = [a.producer(group=GROUP, checker=checker(f"c{i}")) for i, a in enumerate(apps)]
    async with apps[0], apps[1]:
        async with anyio.create_task_group() as tg:
            for n in range(40):
                send = producers[n % 2].send_in_transaction
                tg.start_soon(partial(send, "tx-two", n, execute=lambda m, a: UNKNOWN))
        await wait_until(lambda: half_count(r, namespace, "tx-two") == 0, timeout=10)
    assert overlaps == []
    per_message = Counter(m for _, m in checks)
    assert len(per_message) == 40 and set(per_message.values()) == {2}
    assert sorted(Counter(stream_ids(r, namespace, "tx-two")).values()) == [1] * 40


async def test_max_checks_rolls_back_and_records(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    asked: list[int] = []

    def check(msg: rmq.Message) -> rmq.TransactionState:
        asked.append(msg.delivery_count)
        return UNKNOWN

    producer = app.producer(group=GROUP, checker=check)
    before = counted("tx-max", "discarded"), counted("tx-max", "unknown")
    async with app:
        result = await producer.send_in_transaction(
            "tx-max", {"n": 1}, execute=lambda m, a: UNKNOWN, keys=["order-9"]
        )
        await wait_until(lambda: half_count(r, namespace, "tx-max") == 0, timeout=5)
        with pytest.raises(rmq.TransactionStateError, match="rolled back"):
            await producer._half_store().commit("tx-max", result.queue_id, [result.msg_id])
    assert asked == [1, 2, 3]
    audit = NamespaceKeys(namespace).queue("tx-max", result.queue_id).half_discarded(GROUP)
    ((_, record),) = r.xrange(audit)  # type: ignore[misc]
    assert record[b"i"].decode() == result.msg_id
    assert (record[b"k"], record[b"group"], record[b"checks"], record[b"reason"]) == (
        b"order-9", GROUP.encode(), b"3", b"max_checks",
    )  # fmt: skip
    assert stream_ids(r, namespace, "tx-max") == []
    assert counted("tx-max", "discarded") == before[0] + 1
    assert counted("tx-max", "unknown") == before[1] + 1 + 3  # the local one and three checks


async def test_a_raising_or_slow_checker_counts_as_unknown(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    calls: list[int] = []

    async def check(msg: rmq.Message) -> rmq.TransactionState:
        calls.append(msg.delivery_count)
        if msg.delivery_count == 1:
            raise RuntimeError("checker bug")
        if msg.delivery_count == 2:
            await anyio.sleep(5)  # past half the interval: cancelled
        return COMMIT

    producer = app.producer(group=GROUP, checker=check)
    async with app:
        result = await producer.send_in_transaction("tx-cb", 1, execute=lambda m, a: None)
        await wait_until(lambda: half_count(r, namespace, "tx-cb") == 0, timeout=5)
    assert calls == [1, 2, 3]
    assert stream_ids(r, namespace, "tx-cb") == [result.msg_id]


async def test_check_back_runner_reports_and_stops(settings: rmq.Settings) -> None:
    """A CheckBack with nothing to do sleeps at most the immunity time; it stops when cancelled."""
    async with rmq.App(settings) as app:
        checkback = CheckBack(app.context, GROUP, lambda m: COMMIT)
        wire = app.context.conn.wires()
        assert await checkback.check_once(wire) == pytest.approx(0.3)
        await wire.close()
        with anyio.move_on_after(0.2):
            await checkback.run()
    assert checkback.checked == 0


# ---------------------------------------------------------------------- delays, keys, consumers


async def test_a_delay_starts_at_commit(app: rmq.App) -> None:
    inbox = Inbox(app, "tx-delay")
    committed_at: list[float] = []

    async def local_tx(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
        await anyio.sleep(0.4)
        committed_at.append(time.time())
        return COMMIT

    producer = app.producer(group=GROUP)
    async with running(app):
        result = await producer.send_in_transaction(
            "tx-delay", "later", execute=local_tx, delay=0.5, execute_timeout=2
        )
        assert result.offset == "" and result.deliver_at is not None
        assert result.deliver_at.timestamp() >= committed_at[0] + 0.45
        await wait_until(lambda: len(inbox.messages) == 1, timeout=5)
    msg = inbox.messages[0]
    assert msg.msg_id == result.msg_id
    assert inbox.seen_at[msg.msg_id] >= committed_at[0] + 0.5
    assert msg.stored_at is not None and msg.stored_at.timestamp() >= committed_at[0] + 0.49


async def test_consumers_never_see_half_messages(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    inbox = Inbox(app, "tx-vis")
    producer = app.producer(group=GROUP)
    async with running(app):
        for n in range(20):
            await producer.send_in_transaction("tx-vis", n, execute=lambda m, a: UNKNOWN)
        await app.send("tx-vis", "marker")
        await wait_until(lambda: "marker" in inbox.bodies, timeout=5)
        await anyio.sleep(0.2)
    assert inbox.bodies == ["marker"]
    assert half_count(r, namespace, "tx-vis") == 20


def test_every_transaction_key_of_a_queue_is_in_its_slot() -> None:
    keys = NamespaceKeys("ns")
    q = keys.queue("payments", 7)
    names = [
        q.stream, q.delay, q.delay_payload, q.half, q.half_payload, q.half_group(GROUP),
        q.half_done, q.half_done_expiry, q.half_discarded(GROUP),
    ]  # fmt: skip
    assert len(set(names)) == len(names)
    assert {key_slot(k.encode()) for k in names} == {key_slot(b"payments:7")}
    assert keys.producer_topics(GROUP) == f"ns:ptopics:{GROUP}"


async def test_run_with_only_a_checker(settings: rmq.Settings) -> None:
    app = rmq.App(settings)
    app.transaction_checker(group=GROUP)(lambda m: COMMIT)
    assert list(app.transaction_checkers) == [GROUP]
    async with running(app):
        pass
    with pytest.raises(rmq.ConsumerError, match="no consumers"):
        await rmq.App(settings).run(handle_signals=False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("transaction_check_immunity", 0),
        ("transaction_check_interval", -1.0),
        ("transaction_max_checks", 0),
        ("transaction_max_checks", 2.5),
    ],
)
def test_transaction_settings_are_validated(name: str, value: object) -> None:
    with pytest.raises(rmq.ConfigError, match=name):
        rmq.Settings(**{name: value})  # type: ignore[arg-type]
    assert rmq.Settings.from_env({"RMQ_TRANSACTION_MAX_CHECKS": "4"}).transaction_max_checks == 4
