"""rmq.sync against a real Redis: every send mode, batches, delays, transactions, the pull
consumer, errors, and 16 threads at once."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from typing import Any

import pytest
import redis

import rmq
import rmq.sync
from tests.sync.conftest import stored


def test_send_modes_store_the_same_wire_format_as_the_async_api(
    client: rmq.sync.App, r: redis.Redis, namespace: str
) -> None:
    first = client.send("orders", {"id": 1}, tag="paid", keys=["order-1"],
                        properties={"region": "eu"})  # fmt: skip
    assert first.status is rmq.SendStatus.SEND_OK and first.offset
    again = client.send("orders", {"id": 2})  # the topic is known now: sent from this thread
    done: list[rmq.SendResult] = []
    future = client.send_async("orders", "text", callback=done.append)
    assert isinstance(future, concurrent.futures.Future)
    third = future.result(timeout=5)
    client.send_oneway("orders", b"raw")
    batch = client.send_batch("orders", [rmq.Message({"id": 5}, tag="b"), {"id": 6}])
    client.flush()
    assert done == [third]
    assert len({b.queue_id for b in batch}) == 1
    bodies = stored(r, namespace, "orders")
    assert len(bodies) == 6
    assert bodies[first.msg_id] == b'{"id":1}' and bodies[again.msg_id] == b'{"id":2}'
    assert bodies[third.msg_id] == b"text"
    stream = rmq.keys.NamespaceKeys(namespace).queue("orders", first.queue_id).stream
    entries: Any = r.xrange(stream)
    fields = dict(entries[0][1])
    assert fields == {b"i": first.msg_id.encode(), b"t": b"paid", b"k": b"order-1",
                      b"p": b'{"region":"eu"}', b"c": b"2", b"d": b'{"id":1}'}  # fmt: skip


def test_delayed_sends_and_cancel(client: rmq.sync.App) -> None:
    later = client.send("orders", {"id": 1}, delay=60)
    assert later.offset == "" and later.deliver_at is not None
    assert client.cancel_delayed("orders", later.msg_id) is True
    assert client.cancel_delayed("orders", later.msg_id) is False
    soon = client.send("orders", {"id": 2}, delay_level=1)
    assert soon.deliver_at is not None


def test_bad_input_raises_in_the_calling_thread_and_nothing_is_stored(
    client: rmq.sync.App, r: redis.Redis, namespace: str
) -> None:
    with pytest.raises(rmq.InvalidName):
        client.send("bad topic", 1)
    with pytest.raises(rmq.InvalidName):
        client.send_oneway("orders", 1, tag="a b")
    with pytest.raises(rmq.MessageTooLarge):
        client.send_async("orders", b"x" * (client.settings.max_body_bytes + 1))
    with pytest.raises(rmq.EncodeError):
        client.send("orders", object())
    with pytest.raises(rmq.ConfigError):
        client.send("orders", 1, delay=10**9)
    client.flush()
    assert stored(r, namespace, "orders") == {}


def test_producer_arguments_are_checked_at_once(client: rmq.sync.App) -> None:
    with pytest.raises(rmq.InvalidName):
        client.producer(group="bad group")
    with pytest.raises(rmq.ConfigError, match="needs a producer group"):
        client.producer(checker=lambda msg: None)
    with pytest.raises(rmq.ConfigError, match="callable"):
        client.producer(group="shop", checker=42)  # type: ignore[arg-type]


def test_a_closed_client_refuses_sends(settings: rmq.Settings) -> None:
    with rmq.sync.App(settings) as client:
        client.send("orders", 1)
    with pytest.raises(rmq.ProducerClosed):
        client.send("orders", 2)
    assert "closed" in repr(client)


def test_unreachable_redis_is_broker_unavailable(namespace: str) -> None:
    from rmq.embedded import free_port

    client = rmq.sync.App(redis_url=f"redis://:secret@127.0.0.1:{free_port()}/0",
                          namespace=namespace, startup_timeout=0.3)  # fmt: skip
    with pytest.raises(rmq.BrokerUnavailable) as caught:
        client.send("orders", 1)
    assert "secret" not in str(caught.value)
    client.close()


def test_sixteen_threads_every_mode_stored_once(
    client: rmq.sync.App, r: redis.Redis, namespace: str
) -> None:
    per_thread = 150
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def sender(k: int) -> None:
        ids: list[str] = []
        futures = []
        try:
            start.wait()
            for i in range(per_thread):
                body = {"k": k, "i": i}
                if i % 3 == 0:
                    ids.append(client.send("orders", body).msg_id)
                elif i % 3 == 1:
                    futures.append(client.send_async("orders", body))
                else:
                    client.send_oneway("orders", body, sharding_key=f"t{k}")
            ids += [f.result(timeout=10).msg_id for f in futures]
        except BaseException as exc:
            errors.append(exc)
        results[k] = ids

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    client.flush()
    bodies = stored(r, namespace, "orders")
    assert len(bodies) == 16 * per_thread  # every mode, every thread, nothing twice
    awaited = {m for ids in results.values() for m in ids}
    assert awaited <= set(bodies)
    assert len(awaited) == 16 * (per_thread - per_thread // 3)


def test_a_one_way_send_is_not_overtaken_by_a_later_send_of_the_same_thread(
    client: rmq.sync.App, r: redis.Redis, namespace: str
) -> None:
    client.send("orders", 0, sharding_key="k")  # the topic is known from here on
    for i in range(1, 200, 2):
        client.send_oneway("orders", i, sharding_key="k")
        client.send("orders", i + 1, sharding_key="k")
    client.flush()
    entries = [
        int(fields[b"d"])
        for q in range(4)
        for _, fields in r.xrange(rmq.keys.NamespaceKeys(namespace).queue("orders", q).stream)
    ]
    assert entries == list(range(201))


def test_transactions(client: rmq.sync.App, r: redis.Redis, namespace: str) -> None:
    producer = client.producer(group="order-service")
    caller = threading.get_ident()
    seen: list[tuple[int, object, str]] = []

    def execute(msg: rmq.Message, arg: object) -> rmq.TransactionState:
        seen.append((threading.get_ident(), arg, msg.msg_id))
        return rmq.TransactionState.COMMIT if arg == "yes" else rmq.TransactionState.ROLLBACK

    committed = producer.send_in_transaction("pay", {"n": 1}, execute=execute, arg="yes")
    rolled = producer.send_in_transaction("pay", {"n": 2}, execute=execute, arg="no")
    assert committed.local_state is rmq.TransactionState.COMMIT and committed.offset
    assert rolled.local_state is rmq.TransactionState.ROLLBACK and rolled.offset == ""
    assert [(t, a) for t, a, _ in seen] == [(caller, "yes"), (caller, "no")]  # this thread
    with pytest.raises(ValueError, match="boom"):

        def broken(msg: rmq.Message, arg: object) -> None:
            raise ValueError("boom")

        producer.send_in_transaction("pay", {"n": 3}, execute=broken)

    def slow(msg: rmq.Message, arg: object) -> rmq.TransactionState:
        time.sleep(0.3)
        return rmq.TransactionState.COMMIT

    late = producer.send_in_transaction("pay", {"n": 4}, execute=slow, execute_timeout=0.05)
    assert late.local_state is rmq.TransactionState.UNKNOWN  # left to the check-back

    with producer.transaction() as tx:
        tx.send("pay", {"n": 5})
        tx.send("ledger", {"n": 6}, keys=["order-5"])
    assert tx.state is rmq.TransactionState.COMMIT and len(tx.results) == 2
    with pytest.raises(RuntimeError), producer.transaction() as failed:
        failed.send("pay", {"n": 7})
        raise RuntimeError("the database write failed")
    assert failed.state is rmq.TransactionState.ROLLBACK
    bodies = {*stored(r, namespace, "pay").values(), *stored(r, namespace, "ledger").values()}
    assert bodies == {b'{"n":1}', b'{"n":5}', b'{"n":6}'}


def test_pull_consumer(client: rmq.sync.App) -> None:
    with client.pull_consumer("jobs", "reports", start="first") as pc:
        assert pc.receive(max_messages=5) == []
        for n in range(3):
            client.send("jobs", n)
        msgs = pc.receive(max_messages=10, invisible=30, wait=2)
        assert sorted(m.body for m in msgs) == [0, 1, 2]
        assert pc.ack(msgs[0]) == 1
        assert pc.change_invisible_duration(msgs[1], 60) is True
        assert pc.nack(msgs[2]) is True
        again = pc.receive(max_messages=10, wait=2)
        assert [m.msg_id for m in again] == [msgs[2].msg_id] and again[0].reconsume_times == 1
        pc.ack(*again, msgs[1])
    with pytest.raises(rmq.ConsumerError):
        pc.receive()


def test_a_callback_that_blocks_on_the_client_is_refused_not_a_deadlock(
    client: rmq.sync.App, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(result: rmq.SendResult) -> None:
        client.send("orders", "from the loop thread")  # would wait for itself

    with caplog.at_level(logging.ERROR, logger="rmq.sync"):
        client.send_async("orders", 1, callback=callback).result(timeout=5)
        client.flush()
    assert any("send callback raised" in r.message for r in caplog.records)
    assert "own event loop thread" in caplog.text


def test_run_gives_the_async_app(client: rmq.sync.App) -> None:
    client.send("orders", 1)

    async def topics(app: rmq.App) -> list[str]:
        return [t.name for t in await app.admin.topics()]

    assert client.run(topics) == ["orders"]


def test_a_forked_child_opens_its_own_connection(
    client: rmq.sync.App, r: redis.Redis, namespace: str
) -> None:
    parent = client.send("orders", "parent").msg_id
    pid = os.fork()
    if pid == 0:  # the child: send, close (flush), exit without running pytest's teardown
        code = 1
        try:
            client.send_oneway("orders", "child")
            client.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.send("orders", "parent again")  # the parent's connection is untouched
    bodies = stored(r, namespace, "orders")
    assert sorted(bodies.values()) == [b"child", b"parent", b"parent again"]
    assert bodies[parent] == b"parent"


def test_a_server_that_forgot_the_scripts(client: rmq.sync.App, r: redis.Redis) -> None:
    client.send("orders", 1)  # the loop: the topic is created
    client.send("orders", 2)  # from this thread
    r.script_flush()  # as after a restart without persistence
    assert client.send("orders", 3).offset  # loads the script again, sends once
    client.send_oneway("orders", 4)
    client.flush()
