"""Concurrent prepares and commits on one queue share one script call (`Merge` in the batcher),
against a real Redis: every message is stored once, each caller gets its own answer, and a merged
commit that cannot complete is retried caller by caller, all or none for each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

import rmq
from rmq.outgoing import Outgoing, QueueChooser
from rmq.router import WireSet
from rmq.transaction.batcher import Merge, _plan, _Request
from rmq.transaction.local import half_message
from rmq.transaction.store import HalfStore
from rmq.transaction.types import HalfMessage
from tests.helpers import make_settings

GROUP = "order-service"


class CountingWire:
    """The batcher's real wire, recording how many commands each round trip carried."""

    def __init__(self, wire: WireSet) -> None:
        self.wire = wire
        self.round_trips: list[list[str]] = []

    async def execute(
        self, commands: Sequence[tuple[Any, ...]], seconds: float | None = None
    ) -> list[Any]:
        self.round_trips.append([str(c[0]) for c in commands])
        return await self.wire.execute(commands, seconds)


@pytest.fixture
async def opened(redis_url: str, namespace: str) -> Any:
    app = rmq.App(make_settings(redis_url, namespace))
    async with app:
        await app.admin.create_topic("pay", queues=1)
        yield app


def store_of(producer: rmq.Producer) -> tuple[HalfStore, CountingWire]:
    store = producer._half_store()
    counting = CountingWire(store.batcher._wire)
    store.batcher._wire = counting  # type: ignore[assignment]
    return store, counting


async def halves(producer: rmq.Producer, bodies: Sequence[str]) -> list[HalfMessage]:
    store, chooser = producer._half_store(), QueueChooser()
    return [await half_message(store, chooser, Outgoing("pay", body)) for body in bodies]


async def test_concurrent_transactions_share_script_calls(opened: rmq.App) -> None:
    producer = opened.producer(group=GROUP)
    _, counting = store_of(producer)

    async def commit(msg: rmq.Message, arg: Any) -> rmq.TransactionState:
        return rmq.TransactionState.COMMIT

    await producer.send_in_transaction("pay", "warm-up", execute=commit)  # registers the topic
    counting.round_trips.clear()
    results = await asyncio.gather(
        *[producer.send_in_transaction("pay", f"m{i}", execute=commit) for i in range(60)]
    )
    assert all(r.local_state is rmq.TransactionState.COMMIT for r in results)
    stored = {m.body: m.offset for m in await opened.admin.messages("pay", count=100)}
    assert len(stored) == 61, "every message stored once"
    assert {r.offset for r in results} == {stored[f"m{i}"] for i in range(60)}
    assert len({r.msg_id for r in results}) == 60
    calls = sum(len(trip) for trip in counting.round_trips)
    assert calls < 60, f"120 prepares and commits took {calls} script calls"


async def test_a_merged_commit_that_fails_is_retried_caller_by_caller(opened: rmq.App) -> None:
    producer = opened.producer(group=GROUP)
    store, counting = store_of(producer)
    a, b, c, d = await halves(producer, ["a", "b", "c", "d"])
    for half in (a, b, c, d):
        await store.prepare(half)
    await store.rollback("pay", 0, [c.msg_id])
    counting.round_trips.clear()
    outcomes = await asyncio.gather(
        store.commit("pay", 0, [a.msg_id]),  # alone: sent at once
        store.commit("pay", 0, [b.msg_id]),  # these three queue up and merge...
        store.commit("pay", 0, [c.msg_id]),  # ...but c was rolled back
        store.commit("pay", 0, [d.msg_id]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[2], rmq.TransactionStateError)
    assert all(isinstance(o, list) and o[0][0] for o in (outcomes[0], outcomes[1], outcomes[3]))
    bodies = sorted(m.body for m in await opened.admin.messages("pay", count=10))
    assert bodies == ["a", "b", "d"]
    assert [len(trip) for trip in counting.round_trips] == [1, 1, 3], "merged, then one by one"


async def test_the_same_message_committed_twice_at_once_is_stored_once(opened: rmq.App) -> None:
    producer = opened.producer(group=GROUP)
    store, _ = store_of(producer)
    (a, b) = await halves(producer, ["a", "b"])
    await store.prepare(a)
    await store.prepare(b)
    _, second, third = await asyncio.gather(
        store.commit("pay", 0, [b.msg_id]),
        store.commit("pay", 0, [a.msg_id]),  # a commit and a check-back racing: merged
        store.commit("pay", 0, [a.msg_id]),
    )
    assert second == third
    assert sorted(m.body for m in await opened.admin.messages("pay", count=10)) == ["a", "b"]


async def test_a_merged_call_carries_at_most_500_messages() -> None:
    def split(reply: Any, counts: Sequence[int]) -> list[Any] | None:
        return None

    def request(key: str, n: int) -> _Request:
        values = tuple(f"v{i}" for i in range(n))
        merge = Merge(key, ("EVALSHA", "sha", 1, key), values, n, split)
        return _Request([(*merge.head, *values)], 0.0, "test", merge)

    requests = [request("q0", 1) for _ in range(499)] + [request("q0", 2), request("q1", 3)]
    requests.append(_Request([("PING",)], 0.0, "ping", None))
    commands, groups = _plan(requests)
    assert [len(g) for g in groups] == [499, 1, 1, 1]  # 499 + 2 > 500: a second q0 call
    assert commands[0] == ("EVALSHA", "sha", 1, "q0", *["v0"] * 499)
    assert commands[1][-2:] == ("v0", "v1") and commands[2][3] == "q1" and commands[3] == ("PING",)
