"""SIGKILL a worker mid-run: another worker handles everything it did not acknowledge."""

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
from tests.chaos import (
    WorkerPool,
    group_lag,
    group_pending,
    pending_entries,
    queue_streams,
    wait_for,
    worker_env,
)
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TOPIC = "chaos"
GROUP = "recorder"
QUEUES = 4
MESSAGES = 10_000
BATCH = 500
# Worker A: at most CONCURRENCY / SLEEP = 1000 messages/s, so the kill lands mid-way.
PREFETCH_A = 300
CONCURRENCY_A = 20
SLEEP_A = 0.02
KILL_AFTER_DONE = 2_000


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


async def test_sigkill_mid_run_loses_nothing(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """10,000 messages; worker A is SIGKILLed with thousands unprocessed and hundreds held.

    Asserted:
    - at the kill, >= 2,000 messages are unfinished and >= 100 entries are pending for A;
    - worker B (started after the kill) brings the union of handled ids to exactly the sent set;
    - duplicates are bounded by what A held at the kill: every id handled twice is one A finished
      whose entry was still in A's pending list (handled, XACK not yet applied), and the number of
      extra handlings is at most the size of that pending list. That list is bounded by A's
      prefetch: an entry stays in the consumer's `held` set (prefetched, running, or handled and
      waiting for its XACK round trip) until its XACK returns, and the fetcher never holds more than
      `prefetch` (+ fewer than one per queue from rounding COUNT up to 1), with prefetch >=
      concurrency. So duplicates <= pending at kill <= PREFETCH_A + QUEUES;
    - the group ends with no pending entries and lag 0, and B drains and exits 0 on SIGTERM.
    """
    settings = make_settings(
        server.url, namespace,
        visibility_timeout=1.5, claim_interval=0.3, block_seconds=0.3, default_queues=QUEUES,
    )  # fmt: skip
    app = rmq.App(settings)
    async with app:
        results: list[list[rmq.SendResult]] = []

        async def send_batch(start: int) -> None:
            results.append(await app.send_batch(TOPIC, list(range(start, start + BATCH))))

        async with anyio.create_task_group() as tg:
            for start in range(0, MESSAGES, BATCH):
                tg.start_soon(send_batch, start)
    sent = [r for batch in results for r in batch]
    sent_ids = {r.msg_id for r in sent}
    assert len(sent) == len(sent_ids) == MESSAGES
    streams = queue_streams(namespace, TOPIC, QUEUES)
    by_entry = {(streams[r.queue_id], r.offset): r.msg_id for r in sent}
    assert {r.queue_id for r in sent} == set(range(QUEUES))

    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP)
    with WorkerPool(tmp_path, env) as pool:
        a = pool.start(
            "a", RMQ_PREFETCH=PREFETCH_A, RECORDER_CONCURRENCY=CONCURRENCY_A, RECORDER_SLEEP=SLEEP_A
        )

        def a_progressed() -> bool:
            assert a.running, a.describe()
            return len(a.records().dones) >= KILL_AFTER_DONE

        await wait_for(a_progressed, 40, "worker A to handle 2,000 messages", interval=0.05)
        a.kill()

        # What A held when it died: its pending entries (nobody else consumed yet).
        held_by_a = {by_entry[e] for e in pending_entries(client, streams, GROUP)}
        records_a = a.records()
        done_a = records_a.done_ids
        assert max(records_a.dones.values()) == 1
        assert MESSAGES - len(done_a) >= 2_000, "the kill came too late to be mid-run"
        assert len(held_by_a) >= 100, f"only {len(held_by_a)} entries in flight at the kill"
        assert len(held_by_a) <= PREFETCH_A + QUEUES, len(held_by_a)
        # Every message A started but did not finish is still pending (not lost by an early ack).
        assert records_a.unfinished <= held_by_a

        t_b = time.monotonic()
        b = pool.start("b", RECORDER_CONCURRENCY=50)

        def all_done() -> bool:
            assert b.running, b.describe()
            return pool.done_union() >= sent_ids

        await wait_for(all_done, 45, "worker B to handle every message A did not finish", 0.2)
        recover_seconds = time.monotonic() - t_b

        def settled() -> bool:
            return group_pending(client, streams, GROUP) == 0

        await wait_for(settled, 10, "the group's pending list to empty")
        assert group_lag(client, streams, GROUP) == 0

        done_b = b.records().dones
        assert pool.done_union() == sent_ids
        total: Counter[str] = records_a.dones + done_b
        duplicates = {m for m, n in total.items() if n > 1}
        extra = sum(total.values()) - MESSAGES
        assert duplicates <= done_a & held_by_a, duplicates - (done_a & held_by_a)
        assert extra <= len(held_by_a), (extra, len(held_by_a))

        b.send_signal(signal.SIGTERM)
        assert await b.wait_exit(15) == 0, b.describe()
        print(
            f"kill: {len(done_a)} done by A, {len(held_by_a)} held by A; B recovered in "
            f"{recover_seconds:.1f}s; {len(duplicates)} duplicate(s), {extra} extra handling(s)"
        )
