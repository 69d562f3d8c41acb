"""Entries written by other clients whose properties are not all strings (numbers, nested JSON,
booleans, bytes that are not JSON): every consumer model dead-letters them with a reason and
goes on; none crashes, whatever its `sql=` filter. (One such entry used to kill every worker with
an `sql=` filter: AttributeError in the evaluator.)"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
import redis

import rmq
from rmq.filters import compile_filter
from rmq.keys import NamespaceKeys
from tests.faults import Report
from tests.helpers import make_settings, running, wait_until

pytestmark = pytest.mark.timeout(60)

TOPIC = "foreign"
SQL = "amount > 1"
FOREIGN_PROPERTIES = [
    b'{"amount": 5}',
    b'{"amount": 2.5, "region": "eu"}',
    b'{"amount": {"value": 9}}',
    b'{"amount": [1, 2]}',
    b'{"amount": true}',
    b'{"amount": null}',
    b"\xff\xfe not json",
    b'["amount", 5]',
]


def add_foreign(client: redis.Redis, namespace: str) -> list[str]:
    """XADD one entry per bad properties value, in rmq's own layout (the fast decode path) and
    with only some fields (the slow path); returns their entry ids."""
    stream = NamespaceKeys(namespace).queue(TOPIC, 0).stream
    ids = []
    for n, props in enumerate(FOREIGN_PROPERTIES):
        if n % 2:
            fields = {"i": f"foreign-{n}", "t": "", "k": "", "p": props, "c": "1", "d": "x"}
        else:
            fields = {"d": b"raw body", "p": props}
        ids.append(client.xadd(stream, fields).decode())  # type: ignore[arg-type]
    return ids


async def test_every_consumer_model_dead_letters_them_and_goes_on(
    redis_url: str, r: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    app = rmq.App(make_settings(redis_url, namespace, default_queues=1, lease_ttl=2.0))
    got: dict[str, list[object]] = {"push": [], "orderly": [], "broadcast": [], "pull": []}

    @app.consumer(TOPIC, group="push", sql=SQL, start="first")
    async def push(msg: rmq.Message) -> None:
        got["push"].append(msg.body)

    @app.consumer(TOPIC, group="orderly", sql=SQL, start="first", mode="orderly")
    async def orderly(msg: rmq.Message) -> None:
        got["orderly"].append(msg.body)

    @app.consumer(TOPIC, group="broadcast", sql=SQL, start="first", model="broadcasting")
    async def broadcast(msg: rmq.Message) -> None:
        got["broadcast"].append(msg.body)

    async with app:
        await app.admin.create_topic(TOPIC, 1)
        await app.send(TOPIC, "before", properties={"amount": "7"})
        bad = add_foreign(r, namespace)
        await app.send(TOPIC, "after", properties={"amount": "8"})
        async with app.pull_consumer(TOPIC, "pull", start="first", sql=SQL) as pc:
            while len(got["pull"]) < 2:
                batch = await pc.receive(max_messages=10, wait=1)
                got["pull"] += [m.body for m in batch]
                await pc.ack(*batch)
        async with running(app):
            await wait_until(
                lambda: all(sorted(map(str, v)) == ["after", "before"] for v in got.values()),
                20, "the good messages in every group",
            )  # fmt: skip
            dead: dict[str, list[rmq.DeadLetter]] = {}
            for group in got:
                dlq = app.dead_letters(TOPIC, group)
                await _until_count(dlq.count, len(bad))
                dead[group] = await dlq.entries(limit=100)
            assert all(c.stats.received >= 2 for c in app.running_consumers)
    for group, letters in dead.items():
        assert {d.reason for d in letters} == {"undecodable"}, group
        assert sorted(d.offset for d in letters) == sorted(bad), group
        assert any("not a string" in d.error for d in letters), group
    report = Report("foreign entries with non-string properties")
    report.sent, report.acknowledged = 2 + len(bad), 2
    report.handled = min(len(v) for v in got.values())
    report.extra["dead_lettered_per_group"] = {g: len(v) for g, v in dead.items()}
    report.write(tmp_path)


async def _until_count(count: Callable[[], Awaitable[int]], expected: int) -> None:
    deadline = time.monotonic() + 10
    while (got := await count()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{got} dead letters, expected {expected}")
        await anyio.sleep(0.05)


@pytest.mark.parametrize(
    "value", [5, 2.5, -1, True, False, None, [1], {"v": 1}, b"7", 10**40, float("nan")]
)
@pytest.mark.parametrize(
    "sql",
    [
        "amount > 1", "amount = 5", "amount <> 'x'", "amount = 'x'", "amount BETWEEN 1 AND 9",
        "amount NOT BETWEEN 1 AND 9", "amount IN ('5')", "amount NOT IN ('5')",
        "amount CONTAINS '5'", "amount STARTSWITH '5'", "amount ENDSWITH '5'", "amount IS NULL",
        "amount IS NOT NULL", "NOT amount > 1", "amount > 1 OR TAGS = 'a'", "amount = TRUE",
        "amount = amount", "amount > amount", "TAGS = amount",
    ],
)  # fmt: skip
def test_the_evaluator_never_raises_on_values_that_are_not_strings(sql: str, value: object) -> None:
    """Numbers compare as numbers; anything else is unknown (never selected)."""
    selector = compile_filter(sql=sql)
    result = selector.matches("a", {"amount": value})  # type: ignore[dict-item]
    assert isinstance(result, bool)


def test_numbers_compare_as_numbers() -> None:
    assert compile_filter(sql="amount > 1").matches(None, {"amount": 5})  # type: ignore[dict-item]
    assert not compile_filter(sql="amount > 1").matches(None, {"amount": [5]})  # type: ignore[dict-item]
    assert compile_filter(sql="amount BETWEEN 1 AND 9").matches(None, {"amount": 2.5})  # type: ignore[dict-item]
