"""SIGKILL an order service in the middle of its transactions: a worker's checker finishes them.

The producer (`python -m tests.apps.tx_producer`) runs each order as one transaction whose local
part writes the order id into its "database" (a Redis set); the worker
(`rmq worker run tests.apps.tx_worker:app`) consumes the messages and answers the check-backs
from that database, as the order service itself would. The producer dies by its own SIGKILL at a
chosen point of its last order, or by an external SIGKILL at a random moment.

Asserted each time: an order is delivered (every one of its messages, exactly once) if and only
if its local transaction committed; no half message is left; orders the producer settled itself
are never asked about.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from rmq.embedded import EmbeddedServer
from rmq.keys import NamespaceKeys
from tests.apps.tx_worker import db_key
from tests.chaos import REPO_ROOT, Worker, WorkerPool, wait_for, worker_env
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TOPIC = "txchaos"
GROUP = "order-service"
QUEUES = 4


class TxWorker(Worker):
    """A `rmq worker run tests.apps.tx_worker:app` subprocess."""

    app_target = "tests.apps.tx_worker:app"


class TxPool(WorkerPool):
    def start(self, name: str, **extra: object) -> TxWorker:
        return self.spawn(TxWorker, name, self.directory / f"{name}.out", **extra)


@dataclass
class Outcome:
    """What the producer, the worker and Redis say once everything settled."""

    halves: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    ends: dict[int, str] = field(default_factory=dict)
    dones: Counter[str] = field(default_factory=Counter)
    checks: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    in_db: set[int] = field(default_factory=set)

    @classmethod
    def read(cls, producer_out: Path, worker_out: Path, client: redis.Redis, ns: str) -> Outcome:
        o = cls()
        for line in _lines(producer_out):
            kind, order, value = line.split(" ")
            if kind == "half":
                o.halves[int(order)].append(value)
            else:
                o.ends[int(order)] = value
        for line in _lines(worker_out):
            kind, msg_id, *answer = line.split(" ")
            if kind == "done":
                o.dones[msg_id] += 1
            else:
                o.checks[msg_id] += answer
        o.in_db = {int(m.decode().removeprefix("order-")) for m in client.smembers(db_key(ns))}
        return o

    def check_all_or_nothing(self, parts: int) -> None:
        for order, msg_ids in self.halves.items():
            delivered = [self.dones[m] for m in msg_ids]
            if order in self.in_db:
                assert len(msg_ids) == parts, f"order {order} committed with parts missing"
                assert delivered == [1] * parts, f"order {order}: {delivered}"
            else:
                assert delivered == [0] * len(msg_ids), f"order {order}: {delivered}"
        sent = {m for ids in self.halves.values() for m in ids}
        assert set(self.dones) <= sent, "nothing else was delivered"

    def checked_orders(self) -> set[int]:
        return {o for o, ids in self.halves.items() if any(m in self.checks for m in ids)}


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


def half_messages(client: redis.Redis, namespace: str) -> int:
    keys = NamespaceKeys(namespace)
    return sum(int(client.zcard(keys.queue(TOPIC, q).half)) for q in range(QUEUES))


async def run_scenario(
    server: EmbeddedServer,
    client: redis.Redis,
    namespace: str,
    tmp_path: Path,
    *,
    orders: int,
    parts: int,
    die: str = "",
    kill_after_ends: int | None = None,
) -> Outcome:
    """Start the worker, run the producer until it dies (or kill it), wait until all settled."""
    settings = make_settings(
        server.url, namespace, default_queues=QUEUES, transaction_check_immunity=0.5,
        transaction_check_interval=0.5, transaction_max_checks=15,
    )  # fmt: skip
    env = worker_env(settings)
    producer_out = tmp_path / "producer.out"
    with TxPool(tmp_path, env) as pool:
        worker = pool.start("worker")
        await worker.wait_ready()
        with (tmp_path / "producer.log").open("wb") as log:
            producer = subprocess.Popen(
                [sys.executable, "-m", "tests.apps.tx_producer"],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={
                    **env, "RECORDER_OUT": str(producer_out), "TX_ORDERS": str(orders),
                    "TX_MESSAGES": str(parts), "TX_DIE": die,
                },
            )  # fmt: skip
        try:
            if kill_after_ends is not None:
                await wait_for(
                    lambda: sum(x.startswith("end") for x in _lines(producer_out))
                    >= kill_after_ends,
                    30, "the producer to settle some orders", interval=0.005,
                )  # fmt: skip
                producer.kill()
            await wait_for(lambda: producer.poll() is not None, 60, "the producer to end")
        finally:
            if producer.poll() is None:
                producer.kill()
            producer.wait()
        producer_log = (tmp_path / "producer.log").read_text()
        if die or kill_after_ends is not None:
            assert producer.returncode == -9, producer_log
        else:
            assert producer.returncode == 0, producer_log

        def settled() -> bool:
            assert worker.running, worker.describe()
            if half_messages(client, namespace):
                return False
            o = Outcome.read(producer_out, worker.out, client, namespace)
            committed = [m for order in o.in_db for m in o.halves[order]]
            return all(o.dones[m] for m in committed)

        await wait_for(settled, 30, "every half message to be resolved and delivered")
        worker.send_signal(15)
        assert await worker.wait_exit(30) == 0, worker.describe()
    return Outcome.read(producer_out, worker.out, client, namespace)


@pytest.mark.parametrize(("die", "delivered"), [("after_db", True), ("before_db", False)])
async def test_killed_between_prepare_and_commit(
    server: EmbeddedServer,
    client: redis.Redis,
    namespace: str,
    tmp_path: Path,
    die: str,
    delivered: bool,
) -> None:
    """The last order's half message waits; the worker's checker asks the database."""
    o = await run_scenario(server, client, namespace, tmp_path, orders=6, parts=1, die=die)
    o.check_all_or_nothing(parts=1)
    assert 6 not in o.ends
    (last,) = o.halves[6]
    assert o.checks[last] == (["COMMIT"] if delivered else ["ROLLBACK"])
    assert o.dones[last] == (1 if delivered else 0)
    assert o.in_db == ({1, 2, 3, 4, 6} if delivered else {1, 2, 3, 4})
    assert o.checked_orders() == {6}, "orders settled by the producer are never asked about"


async def test_killed_right_after_commit(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Committed, then the producer dies: delivered once, no duplicate, never checked."""
    o = await run_scenario(
        server, client, namespace, tmp_path, orders=6, parts=1, die="after_commit"
    )
    o.check_all_or_nothing(parts=1)
    (last,) = o.halves[6]
    assert 6 not in o.ends and 6 in o.in_db
    assert o.dones[last] == 1
    assert o.checked_orders() == set()


@pytest.mark.parametrize(("die", "delivered"), [("after_commit", True), ("mid_rollback", False)])
async def test_killed_midway_through_a_multi_queue_transaction(
    server: EmbeddedServer,
    client: redis.Redis,
    namespace: str,
    tmp_path: Path,
    die: str,
    delivered: bool,
) -> None:
    """Three messages on three queues; the producer dies after the first queue's commit (or
    rollback): the checker resolves the other two the same way, so the order is all or nothing."""
    o = await run_scenario(server, client, namespace, tmp_path, orders=6, parts=3, die=die)
    o.check_all_or_nothing(parts=3)
    last = o.halves[6]
    assert len(last) == 3 and 6 not in o.ends
    assert [o.dones[m] for m in last] == ([1, 1, 1] if delivered else [0, 0, 0])
    answer = "COMMIT" if delivered else "ROLLBACK"
    assert sorted(len(o.checks[m]) for m in last) == [0, 1, 1], "the first queue was settled"
    assert all(o.checks[m] == [answer] for m in last if o.checks[m])
    assert o.checked_orders() == {6}


async def test_killed_at_a_random_moment(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Hundreds of two-queue transactions, an external SIGKILL at a random point: every order
    ends all-or-nothing, as its local transaction decided, each message at most once."""
    kill_after = random.randint(50, 150)
    o = await run_scenario(
        server, client, namespace, tmp_path, orders=1000, parts=2, kill_after_ends=kill_after
    )
    o.check_all_or_nothing(parts=2)
    assert len(o.ends) >= kill_after
    assert len(o.halves) < 1000, "killed before the end"
    unsettled = set(o.halves) - set(o.ends)
    assert o.checked_orders() <= unsettled
