"""Broadcasting under a restart, with instances in subprocesses (`tests.apps.broadcaster:app`).

Three instances without an explicit instance id claim host slots; one is restarted (SIGTERM,
exit 0, started again) in the middle of a stream of messages. It must get its instance id (and so
its offsets) back, and every instance must handle every message.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer
from rmq.keys import NamespaceKeys
from tests.chaos import Worker, WorkerPool, queue_streams, wait_for, worker_env
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

APP_TARGET = "tests.apps.broadcaster:app"
TOPIC = "bcast"
GROUP = "broadcaster"
APP_NAME = "bcastchaos"
QUEUES = 4
FETCH_BATCH = 16
MESSAGES = 3_000
CHUNK = 10  # messages per send_batch
CHUNK_INTERVAL = 0.02  # ~500 messages/s: the stream lasts ~6 s (longer if the restart is slow)
SLEEP = 0.005  # per message
# Handlers of one batch run 4 at a time, so they finish in waves; a graceful stop (SIGTERM) lets
# the batch being handled finish and saves its offset, so the restart replays nothing.
CONCURRENCY = 4
RESTART_AFTER_SENT = 800
RESTART_AFTER_HANDLED = 300
AFTER_READY = 300  # the stream goes on for this many messages after the restarted one is up

_INSTANCE_LOG = re.compile(r"broadcasting instance (\S+)")


class BroadcastWorker(Worker):
    """A `rmq worker run tests.apps.broadcaster:app` subprocess."""

    app_target = APP_TARGET

    def logged_instance(self) -> str | None:
        """The instance id the consumer logged at startup."""
        found = _INSTANCE_LOG.search(self.log_text())
        return found.group(1) if found else None


class BroadcastPool(WorkerPool):
    """Starts broadcaster instances; `out` names the record file (kept across restarts)."""

    def __enter__(self) -> BroadcastPool:
        return self

    def start(self, name: str, **extra: object) -> BroadcastWorker:
        return self.start_as(name, name, **extra)

    def start_as(self, name: str, out: str, **extra: object) -> BroadcastWorker:
        """Start `name` recording to `<out>.records` (a restarted instance keeps its file)."""
        return self.spawn(BroadcastWorker, name, self.directory / f"{out}.records", **extra)


@dataclass(frozen=True, slots=True)
class Handled:
    pid: int
    instance: str
    body: int
    msg_id: str


def read_handled(path: Path) -> list[Handled]:
    """The complete lines of a record file, in file order."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out: list[Handled] = []
    for line in text.split("\n")[:-1]:
        pid, instance, body, msg_id = line.split(" ")
        out.append(Handled(int(pid), instance, int(body), msg_id))
    return out


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


async def test_restarted_instance_gets_its_id_back_and_resumes(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """3 instances, >= 3,000 messages streamed at ~500/s; one instance restarted mid-stream.

    Asserted:
    - the 3 instances claimed 3 distinct slot ids `<host>:<app_name>:<n>` (log, records and
      `<ns>:bslot:<group>:<id>` keys agree);
    - the restart is mid-stream (messages sent while it stopped, while it was down and after it
      came back) and the old process exits 0 on SIGTERM;
    - the restarted process logs, records under and holds (slot key token carries its pid) the
      same instance id;
    - every instance id handled every message (the restarted one: its two processes together);
    - the untouched instances handled each message exactly once; the restarted one handled again
      only messages its predecessor had handled, all on one queue and at most FETCH_BATCH of them
      (the batch in flight: offsets are committed per queue after a whole batch); everything else
      it handled is exactly what its predecessor had not (it resumed from its offset, not from
      `start="first"`);
    - the stored offsets end at each queue's last entry; all exit 0 and release their slots.
    """
    settings = make_settings(
        server.url, namespace, lease_ttl=2.0, rebalance_interval=0.2, block_seconds=0.3,
        default_queues=QUEUES, fetch_batch=FETCH_BATCH, app_name=APP_NAME, shutdown_grace=5.0,
        concurrency=CONCURRENCY,
    )  # fmt: skip
    keys = NamespaceKeys(namespace)
    streams = queue_streams(namespace, TOPIC, QUEUES)
    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP, RECORDER_SLEEP=SLEEP)
    app = rmq.App(settings)
    started = time.monotonic()
    async with app:
        await app.context.topics.create(TOPIC, QUEUES)
        with BroadcastPool(tmp_path, env) as pool:
            instances = [pool.start(f"b{i}") for i in range(3)]
            for instance in instances:
                await instance.wait_ready(30)
            ids = [instance.logged_instance() for instance in instances]
            assert all(ids) and len(set(ids)) == 3, ids
            for instance_id, instance in zip(ids, instances, strict=True):
                assert instance_id is not None
                assert re.fullmatch(rf".+:{APP_NAME}:[0-2]", instance_id), instance_id
                token = client.get(keys.broadcast_slot(GROUP, instance_id))
                assert token is not None and str(instance.pid) in _text(token).split("-")

            victim = instances[1]
            victim_id = ids[1]
            assert victim_id is not None
            sent: list[rmq.SendResult] = []
            restarted: list[BroadcastWorker] = []
            sent_at: dict[str, int] = {}

            async def stream() -> None:
                """MESSAGES messages, and on until AFTER_READY were sent after the restart."""

                def more() -> bool:
                    ready = sent_at.get("ready")
                    return ready is None or len(sent) < max(MESSAGES, ready + AFTER_READY)

                while more():
                    first = len(sent)
                    sent.extend(await app.send_batch(TOPIC, list(range(first, first + CHUNK))))
                    await anyio.sleep(CHUNK_INTERVAL)

            async def restart() -> None:
                def progressed() -> bool:
                    assert victim.running, victim.describe()
                    return (
                        len(sent) >= RESTART_AFTER_SENT
                        and len(read_handled(victim.out)) >= RESTART_AFTER_HANDLED
                    )

                await wait_for(progressed, 30, "the victim to be mid-stream", interval=0.02)
                victim.send_signal(signal.SIGTERM)
                sent_at["stop"] = len(sent)
                assert await victim.wait_exit(15) == 0, victim.describe()
                sent_at["exited"] = len(sent)
                again = pool.start_as("b1-restarted", out="b1")
                restarted.append(again)
                await again.wait_ready(30)
                sent_at["ready"] = len(sent)

            async with anyio.create_task_group() as tg:
                tg.start_soon(restart)
                await stream()
            total = len(sent)
            assert total >= MESSAGES
            assert {r.queue_id for r in sent} == set(range(QUEUES))
            (again,) = restarted
            bodies = set(range(total))
            queue_of = {body: r.queue_id for body, r in enumerate(sent)}

            def handled_by(instance_id: str) -> set[int]:
                worker_files = {w.out for w in pool.workers}
                return {
                    h.body
                    for path in worker_files
                    for h in read_handled(path)
                    if h.instance == instance_id
                }

            def everyone_done() -> bool:
                for w in (instances[0], instances[2], again):
                    assert w.running, w.describe()
                return all(handled_by(i) >= bodies for i in ids if i is not None)

            await wait_for(everyone_done, 40, "every instance to handle every message", 0.2)
            elapsed = time.monotonic() - started

            assert sent_at["stop"] < sent_at["exited"] < sent_at["ready"] < total, sent_at
            assert again.logged_instance() == victim_id, (again.logged_instance(), victim_id)
            token = client.get(keys.broadcast_slot(GROUP, victim_id))
            assert token is not None and str(again.pid) in _text(token).split("-")

            records = {i: read_handled(instances[i].out) for i in (0, 2)}
            for i, lines in records.items():
                assert {h.instance for h in lines} == {ids[i]}
                counts = Counter(h.body for h in lines)
                assert set(counts) == bodies
                assert max(counts.values()) == 1, f"instance {ids[i]} handled some twice"

            lines = read_handled(victim.out)
            assert {h.instance for h in lines} == {victim_id}, "the restart changed the id"
            before = [h.body for h in lines if h.pid == victim.pid]
            after = [h.body for h in lines if h.pid == again.pid]
            assert len(before) + len(after) == len(lines)
            assert max(Counter(before).values()) == 1 and max(Counter(after).values()) == 1
            duplicated = set(before) & set(after)
            assert set(before) | set(after) == bodies
            assert set(after) == (bodies - set(before)) | duplicated
            assert duplicated == set(), "a graceful restart replays nothing"

            offsets_key = [keys.queue(TOPIC, q).broadcast_offsets(GROUP) for q in range(QUEUES)]
            for q, key in enumerate(offsets_key):
                last = client.xrevrange(streams[q], count=1)[0][0]
                stored = client.hgetall(key)
                assert {_text(k): _text(v) for k, v in stored.items()} == {
                    i: _text(last) for i in ids if i is not None
                }

            survivors = [instances[0], instances[2], again]
            for w in survivors:
                w.send_signal(signal.SIGTERM)
            for w in survivors:
                assert await w.wait_exit(15) == 0, w.describe()
            live_slots = [i for i in ids if i and client.exists(keys.broadcast_slot(GROUP, i))]
            assert live_slots == [], f"slots not released: {live_slots}"

            per_queue: dict[int, int] = defaultdict(int)
            for b in duplicated:
                per_queue[queue_of[b]] += 1
            print(
                f"broadcast restart: {total} messages in {elapsed:.1f}s; ids {ids}; "
                f"restart at {sent_at} sent; victim handled {len(before)} before, {len(after)} "
                f"after; {len(duplicated)} duplicate(s) {dict(per_queue)}"
            )
