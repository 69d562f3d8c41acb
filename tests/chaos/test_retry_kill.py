"""SIGKILL a worker in the middle of retries: every message is handled or dead-lettered, once.

The workers run `tests.apps.flaky:app`: bodies with `n % 3 == 0` always fail (two retries, then
the dead-letter queue), `n % 3 == 1` fail once, the rest succeed. Worker A is killed while retries
are scheduled, in the retry streams and in its hands; worker B finishes everything.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer
from rmq.keys import NamespaceKeys
from tests.chaos import (
    Worker,
    WorkerPool,
    group_lag,
    group_pending,
    pending_entries,
    wait_for,
    worker_env,
)
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

APP_TARGET = "tests.apps.flaky:app"
TOPIC = "chaos"
GROUP = "flaky"
QUEUES = 4
MESSAGES = 3_000
BATCH = 500
CONCURRENCY_A = 16
CONCURRENCY_B = 32
SLEEP = 0.01
# The kill comes once A has handled some messages and dead-lettered some (after their third
# failure), far from done: 2,000 succeed and 1,000 are dead-lettered in the end.
KILL_AFTER_DONE = 400
KILL_AFTER_DEAD = 10


class FlakyWorker(Worker):
    """A `rmq worker run tests.apps.flaky:app` subprocess (same records as the recorder)."""

    app_target = APP_TARGET

    def failures(self) -> Counter[str]:
        """How often each msg_id failed on purpose in this worker."""
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return Counter()
        return Counter(
            line[5:] for line in text.splitlines() if line.startswith("fail ") and line[5:]
        )


class FlakyPool(WorkerPool):
    """Starts flaky workers; kills every one still running on exit."""

    def __enter__(self) -> FlakyPool:
        return self

    def start(self, name: str, **extra: object) -> FlakyWorker:
        return self.spawn(FlakyWorker, name, self.directory / f"{name}.records", **extra)


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Layout:
    """The keys of the topic's queues for GROUP."""

    def __init__(self, namespace: str) -> None:
        queues = [NamespaceKeys(namespace).queue(TOPIC, q) for q in range(QUEUES)]
        self.streams = [q.stream for q in queues]
        self.retry_streams = [q.retry_stream(GROUP) for q in queues]
        self.zsets = [q.retry(GROUP) for q in queues]
        self.payloads = [q.retry_payload(GROUP) for q in queues]
        self.dlqs = [q.dlq(GROUP) for q in queues]

    def all_streams(self) -> list[str]:
        return self.streams + self.retry_streams

    def waiting(self, client: redis.Redis) -> int:
        """Retries waiting for their backoff (zset members)."""
        return sum(int(client.zcard(z)) for z in self.zsets)

    def waiting_payloads(self, client: redis.Redis) -> int:
        return sum(int(client.hlen(p)) for p in self.payloads)

    def dead_msg_ids(self, client: redis.Redis) -> list[str]:
        """The msg_id of every dead letter (XRANGE of the group's DLQ streams), duplicates kept."""
        out: list[str] = []
        for dlq in self.dlqs:
            for _, fields in client.xrange(dlq):
                out.append(_text(fields.get(b"o:i", b"")))
        return out


async def test_sigkill_mid_retries_dead_letters_exactly_the_failing_ones(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """3,000 messages; worker A is SIGKILLed while failures are being retried.

    Asserted:
    - at the kill, A has failed messages on purpose, retries are in flight (waiting in the retry
      zsets or pending in the retry streams) and most messages are not settled;
    - worker B (started after the kill) settles everything: every message is either handled
      ("done" by a worker) or dead-lettered, never both; none is lost;
    - the dead letters are exactly the always-failing messages, each exactly once, with reason
      max_retries after 3 attempts and their first delivery's offset;
    - no entry stays pending in the queue or retry streams, the retry zsets and payload hashes
      are empty, and B exits 0 on SIGTERM.
    """
    settings = make_settings(
        server.url, namespace,
        visibility_timeout=1.5, claim_interval=0.3, block_seconds=0.3, default_queues=QUEUES,
    )  # fmt: skip
    app = rmq.App(settings)
    bodies = list(range(MESSAGES))
    results: dict[int, list[rmq.SendResult]] = {}
    async with app:

        async def send_batch(start: int) -> None:
            results[start] = await app.send_batch(TOPIC, bodies[start : start + BATCH])

        async with anyio.create_task_group() as tg:
            for start in range(0, MESSAGES, BATCH):
                tg.start_soon(send_batch, start)
    sent = [r for start in sorted(results) for r in results[start]]
    assert len(sent) == MESSAGES
    body_of = {r.msg_id: body for r, body in zip(sent, bodies, strict=True)}
    offset_of = {r.msg_id: r.offset for r in sent}
    sent_ids = set(body_of)
    assert len(sent_ids) == MESSAGES
    doomed = {m for m, body in body_of.items() if body % 3 == 0}
    succeed = sent_ids - doomed
    assert len(doomed) == MESSAGES // 3
    keys = Layout(namespace)

    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP, RECORDER_SLEEP=SLEEP)
    with FlakyPool(tmp_path, env) as pool:
        a = pool.start("a", RECORDER_CONCURRENCY=CONCURRENCY_A)

        def a_progressed() -> bool:
            assert a.running, a.describe()
            if len(a.records().dones) < KILL_AFTER_DONE:
                return False
            return sum(int(client.xlen(d)) for d in keys.dlqs) >= KILL_AFTER_DEAD

        await wait_for(a_progressed, 30, "worker A to handle and dead-letter some", interval=0.02)
        a.kill()

        # What was in flight when A died.
        held_by_a = pending_entries(client, keys.all_streams(), GROUP)
        held_retries = {e for e in held_by_a if e[0] in keys.retry_streams}
        waiting_at_kill = keys.waiting(client)
        dead_at_kill = len(keys.dead_msg_ids(client))
        failed_a = a.failures()
        done_a = a.records().done_ids
        assert failed_a, "A failed nothing before the kill"
        assert dead_at_kill >= KILL_AFTER_DEAD
        assert held_by_a, "A held nothing at the kill"
        assert waiting_at_kill + len(held_retries) > 0, "no retry was in flight at the kill"
        assert len(done_a) + dead_at_kill <= MESSAGES * 2 // 3, "the kill came too late"

        t_b = time.monotonic()
        b = pool.start("b", RECORDER_CONCURRENCY=CONCURRENCY_B)

        def settled() -> bool:
            assert b.running, b.describe()
            if not pool.done_union() | set(keys.dead_msg_ids(client)) >= sent_ids:
                return False
            if group_pending(client, keys.all_streams(), GROUP):
                return False
            return keys.waiting(client) == 0

        await wait_for(settled, 45, "worker B to settle every message", interval=0.2)
        recover_seconds = time.monotonic() - t_b

        done = pool.done_union()
        dead = keys.dead_msg_ids(client)
        dead_set = set(dead)
        # none lost, none dead-lettered twice, exactly the always-failing ones dead-lettered
        assert done | dead_set == sent_ids, sent_ids - (done | dead_set)
        assert len(dead) == len(dead_set), [m for m, n in Counter(dead).items() if n > 1]
        assert dead_set == doomed, (sorted(dead_set - doomed)[:5], sorted(doomed - dead_set)[:5])
        assert done == succeed
        assert not done & dead_set
        # nothing left behind
        assert pending_entries(client, keys.all_streams(), GROUP) == set()
        assert keys.waiting(client) == 0
        assert keys.waiting_payloads(client) == 0
        for streams in (keys.streams, keys.retry_streams):
            assert group_lag(client, streams, GROUP) in (0, None)

        # the dead letters as the API shows them
        async with rmq.App(settings) as admin:
            dlq = admin.dead_letters(TOPIC, GROUP)
            assert await dlq.count() == len(doomed)
            letters = await dlq.entries(limit=MESSAGES)
        assert len(letters) == len(doomed)
        for letter in letters:
            assert letter.msg_id is not None
            assert letter.reason == "max_retries", letter
            assert letter.attempts == 3, letter
            assert not letter.lost
            assert letter.offset == offset_of[letter.msg_id]
            assert letter.message is not None
            assert letter.message.body == body_of[letter.msg_id]
            assert letter.message.reconsume_times == 2

        b.send_signal(signal.SIGTERM)
        assert await b.wait_exit(15) == 0, b.describe()
        failed_b = b.failures()
        total = a.records().dones + b.records().dones
        print(
            f"kill: {len(done_a)} done by A, {sum(failed_a.values())} failures, "
            f"{len(held_by_a)} held by A ({len(held_retries)} retry copies), "
            f"{waiting_at_kill} retries waiting, {dead_at_kill} dead; B settled in "
            f"{recover_seconds:.1f}s with {sum(failed_b.values())} failures; "
            f"{sum(total.values()) - len(succeed)} extra handling(s)"
        )
