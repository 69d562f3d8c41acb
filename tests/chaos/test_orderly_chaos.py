"""Orderly consumption under faults, with members in subprocesses (`tests.apps.orderly:app`).

Every member appends `<pid> <key> <seq> <msg_id>` to one shared file (one `O_APPEND` write per
message), so the file is the global order in which handlers completed, across processes.

- A member is SIGKILLed mid-run and another one joins later: nothing is lost and, per sharding
  key, messages are handled for the first time in send order.
- Fencing: a member is paused (SIGSTOP) past its lease, another takes its queue over; once
  resumed, the paused member acknowledges nothing and stops consuming the queue.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
    queue_streams,
    wait_for,
    worker_env,
)
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

APP_TARGET = "tests.apps.orderly:app"
TOPIC = "ordered"
GROUP = "orderly"
FETCH_BATCH = 32


# ---------------------------------------------------------------------- helpers


class OrderlyWorker(Worker):
    """A `rmq worker run tests.apps.orderly:app` subprocess writing to a shared record file."""

    app_target = APP_TARGET

    async def wait_state(self, stopped: bool, timeout: float = 5.0) -> None:
        """Wait until the kernel reports the process stopped (SIGSTOP) or running again."""

        def reached() -> bool:
            return _is_stopped(self.pid) == stopped

        await wait_for(reached, timeout, f"worker {self.name} stopped={stopped}", interval=0.01)


class OrderlyPool(WorkerPool):
    """Starts orderly members that all append to `out`; kills every one still running on exit."""

    def __init__(self, directory: Path, env: Mapping[str, str], out: Path) -> None:
        super().__init__(directory, env)
        self.out = out
        self.members: list[OrderlyWorker] = []

    def __enter__(self) -> OrderlyPool:
        return self

    def start(self, name: str, **extra: object) -> OrderlyWorker:
        worker = self.spawn(OrderlyWorker, name, self.out, **extra)
        self.members.append(worker)
        return worker

    def __exit__(self, et: object, e: object, tb: object) -> None:
        for worker in self.members:  # a stopped process must be continued to be reaped cleanly
            if worker.running:
                worker.process.send_signal(signal.SIGCONT)
        super().__exit__(None, None, None)


def _is_stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


@dataclass(frozen=True, slots=True)
class Handled:
    """One line of the shared record file: a handler that ran to completion."""

    pid: int
    key: str
    seq: int
    msg_id: str


def read_handled(path: Path) -> list[Handled]:
    """The complete lines of the record file, in file order (a partial last line is skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # what follows the last newline is incomplete (or empty)
    out: list[Handled] = []
    for line in lines:
        pid, key, seq, msg_id = line.split(" ")
        out.append(Handled(int(pid), key, int(seq), msg_id))
    return out


def order_violations(handled: list[Handled]) -> list[str]:
    """Per key, a seq handled for the first time after a higher seq of the same key.

    A repeated handling of a seq already handled is a duplicate (at-least-once), not a violation.
    """
    seen: dict[str, set[int]] = defaultdict(set)
    highest: dict[str, int] = {}
    violations: list[str] = []
    for index, h in enumerate(handled):
        if h.seq in seen[h.key]:
            continue
        if h.seq < highest.get(h.key, -1):
            violations.append(
                f"line {index + 1}: {h.key} seq {h.seq} first handled (pid {h.pid}) after seq "
                f"{highest[h.key]}"
            )
        seen[h.key].add(h.seq)
        highest[h.key] = max(h.seq, highest.get(h.key, -1))
    return violations


def lease_holders(
    client: redis.Redis, namespace: str, queues: int, group: str = GROUP
) -> dict[int, str | None]:
    """queue id -> the member name holding its lease (None when free)."""
    keys = NamespaceKeys(namespace)
    out: dict[int, str | None] = {}
    for queue_id in range(queues):
        raw = client.get(keys.queue(TOPIC, queue_id).lease(group))
        out[queue_id] = None if raw is None else _text(raw).rpartition(":")[0]
    return out


def is_member(member: str | None, pid: int) -> bool:
    """Whether a member name (`<host>-<pid>-<random>` or `<prefix>-<pid>`) is process `pid`'s."""
    return member is not None and str(pid) in member.split("-")


def consumers_info(client: redis.Redis, stream: str, group: str = GROUP) -> dict[str, int]:
    """consumer name -> its pending count (XINFO CONSUMERS)."""
    return {
        _text(row["name"]): int(row["pending"]) for row in client.xinfo_consumers(stream, group)
    }


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def duplicates(handled: list[Handled]) -> Counter[tuple[str, int]]:
    """(key, seq) -> how many handlings beyond the first."""
    counts = Counter((h.key, h.seq) for h in handled)
    return Counter({item: n - 1 for item, n in counts.items() if n > 1})


@pytest.fixture
def server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    return server_factory().start()


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


# ---------------------------------------------------------------------- kill and join

QUEUES = 8
KEYS = 200
PER_KEY = 100
ROUND = 10  # seqs per key and per send_batch; rounds are sent one after the other
SLEEP = 0.004  # per message: a queue does at most 250 messages/s, so the run lasts seconds
KILL_AFTER = 4_000


async def send_keyed(app: rmq.App) -> dict[tuple[str, int], rmq.SendResult]:
    """KEYS keys x PER_KEY seqs; per key the batches go one after the other, keys concurrently."""
    results: dict[tuple[str, int], rmq.SendResult] = {}

    async def send(key: str, first: int) -> None:
        seqs = range(first, first + ROUND)
        sent = await app.send_batch(TOPIC, [{"key": key, "seq": s} for s in seqs], sharding_key=key)
        results.update(zip(((key, s) for s in seqs), sent, strict=True))

    for first in range(0, PER_KEY, ROUND):
        async with anyio.create_task_group() as tg:
            for k in range(KEYS):
                tg.start_soon(send, f"k{k}", first)
    return results


async def test_member_killed_and_member_joining_keep_per_key_order(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """3 members on 8 queues, 20,000 messages over 200 sharding keys; SIGKILL one, add one.

    Asserted:
    - the kill is mid-run (at most 1/4 of the messages handled, the victim held leases and had
      handled messages) and the joiner joins mid-run (messages left when it got its first queue)
      and handles some;
    - the set of handled (key, seq) is exactly the sent set;
    - per key, first handlings come in increasing seq order (file order = global order);
    - duplicates are only messages the killed member had handled, at most FETCH_BATCH per queue
      it held (handled but not yet acknowledged: acks are flushed at least once per fetched
      batch, before the next fetch of that queue);
    - no pending entries and lag 0 on every queue stream; the remaining members exit 0 on
      SIGTERM.
    """
    settings = make_settings(
        server.url, namespace, lease_ttl=2.0, rebalance_interval=0.2, block_seconds=0.3,
        default_queues=QUEUES, fetch_batch=FETCH_BATCH, shutdown_grace=5.0,
    )  # fmt: skip
    streams = queue_streams(namespace, TOPIC, QUEUES)
    out = tmp_path / "handled.records"
    env = worker_env(settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP, RECORDER_SLEEP=SLEEP)
    app = rmq.App(settings)
    started = time.monotonic()
    async with app:
        info = await app.context.topics.create(TOPIC, QUEUES)
        assert info.queues == QUEUES
        with OrderlyPool(tmp_path, env, out) as pool:
            members = [pool.start(f"m{i}") for i in range(3)]
            for member in members:
                await member.wait_ready(30)
            pids = {m.pid for m in members}

            seen: list[dict[int, str | None]] = []

            def shared_out() -> bool:
                for m in members:
                    assert m.running, m.describe()
                seen[:] = [lease_holders(client, namespace, QUEUES)]
                holders = seen[0].values()
                return all(any(is_member(h, m.pid) for h in holders) for m in members) and all(
                    any(is_member(h, m.pid) for m in members) for h in holders
                )

            try:
                await wait_for(shared_out, 20, "the 3 members to share the 8 queues out")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: leases {seen}, pids {pids}") from None

            sent: dict[tuple[str, int], rmq.SendResult] = {}
            victim, survivors = members[1], [members[0], members[2]]
            joiner: OrderlyWorker | None = None
            victim_queues: list[int] = []
            victim_pending: list[int] = []  # per queue it held: entries it had not acknowledged
            handled_at_kill = handled_at_join = 0

            async def chaos() -> None:
                nonlocal joiner, handled_at_kill, handled_at_join
                victim_pid = victim.pid

                def progressed() -> bool:
                    assert victim.running, victim.describe()
                    handled = read_handled(out)
                    return len(handled) >= KILL_AFTER and any(h.pid == victim_pid for h in handled)

                await wait_for(progressed, 40, f"{KILL_AFTER} messages handled", interval=0.02)
                holders = lease_holders(client, namespace, QUEUES)
                victim_queues.extend(q for q, h in holders.items() if is_member(h, victim_pid))
                victim.kill()
                handled_at_kill = len(read_handled(out))
                victim_pending.extend(
                    n
                    for q in victim_queues
                    for name, n in consumers_info(client, streams[q]).items()
                    if is_member(name, victim_pid)
                )
                assert victim_queues, f"the victim held no queue: {holders}"

                def taken_over() -> bool:
                    for s in survivors:
                        assert s.running, s.describe()
                    holders = lease_holders(client, namespace, QUEUES)
                    return all(
                        any(is_member(holders[q], s.pid) for s in survivors) for q in victim_queues
                    )

                await wait_for(taken_over, 20, "the survivors to take the victim's queues over")
                joiner = pool.start("m3")
                await joiner.wait_ready(30)
                joiner_pid = joiner.pid

                def joined() -> bool:
                    assert joiner is not None and joiner.running, pool.describe()
                    holders = lease_holders(client, namespace, QUEUES)
                    return any(is_member(h, joiner_pid) for h in holders.values())

                await wait_for(joined, 20, "the new member to get queues", interval=0.02)
                handled_at_join = len({(h.key, h.seq) for h in read_handled(out)})

            async with anyio.create_task_group() as tg:
                tg.start_soon(chaos)
                sent = await send_keyed(app)
            assert len(sent) == KEYS * PER_KEY
            sent_items = set(sent)
            assert {r.queue_id for r in sent.values()} == set(range(QUEUES))
            assert joiner is not None

            def all_handled() -> bool:
                for m in [*survivors, joiner]:
                    assert m.running, m.describe()
                return {(h.key, h.seq) for h in read_handled(out)} >= sent_items

            await wait_for(all_handled, 60, "every message to be handled", interval=0.2)
            await wait_for(
                lambda: group_pending(client, streams, GROUP) == 0, 15, "no pending entries"
            )
            handled = read_handled(out)
            elapsed = time.monotonic() - started

            assert handled_at_kill <= len(sent) // 4, f"killed late: {handled_at_kill} handled"
            assert handled_at_join < len(sent), "the new member joined after the end"
            by_pid = Counter(h.pid for h in handled)
            assert by_pid[victim.pid] > 0
            assert by_pid[joiner.pid] > 0, f"the new member handled nothing: {by_pid}"
            assert {(h.key, h.seq) for h in handled} == sent_items
            # every message was handled by the member of its queue: msg ids match what was sent
            assert {(h.key, h.seq, h.msg_id) for h in handled} == {
                (k, s, r.msg_id) for (k, s), r in sent.items()
            }
            violations = order_violations(handled)
            assert not violations, "\n".join(violations[:20])

            dups = duplicates(handled)
            victim_items = {(h.key, h.seq) for h in handled if h.pid == victim.pid}
            assert set(dups) <= victim_items, set(dups) - victim_items
            bound = FETCH_BATCH * len(victim_queues)
            assert sum(dups.values()) <= bound, (sum(dups.values()), bound)

            assert group_pending(client, streams, GROUP) == 0
            assert group_lag(client, streams, GROUP) == 0

            for m in [*survivors, joiner]:
                m.send_signal(signal.SIGTERM)
            for m in [*survivors, joiner]:
                assert await m.wait_exit(20) == 0, m.describe()
            assert group_pending(client, streams, GROUP) == 0
            print(
                f"kill/join: {len(sent)} messages in {elapsed:.1f}s; killed at {handled_at_kill} "
                f"handled (victim held queues {victim_queues}, {sum(victim_pending)} pending), "
                f"joined at {handled_at_join}; "
                f"{sum(dups.values())} duplicate(s) (bound {bound}); per member {dict(by_pid)}"
            )


# ---------------------------------------------------------------------- fencing

FENCE_KEYS = 10
FENCE_PER_KEY = 20
FENCE_SLEEP = 0.05
A_BEFORE_PAUSE = 30
# B handles what A had not acknowledged again, then goes past where A was: A resumes behind B.
B_AHEAD = 10
# What a member logs when it notices it lost a queue (the lease check before the next message,
# the fenced ack, the failed renewal, or the rebalance handing the queue to someone else).
STOP_MARKERS = (
    "expired before the next message",
    "fenced: queue 0",
    "lost the lease of queue 0",
    "handing queue 0 over",
)


async def test_paused_member_is_fenced_after_takeover(
    server: EmbeddedServer, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """A consumes a 1-queue topic (50 ms/message); SIGSTOP A past the lease TTL; B takes over.

    Members are named so that B sorts first: once B is up it is the rightful owner of the queue,
    so anything A does with the queue after it resumes is stale.

    Asserted:
    - B acquired the lease only once A's had expired (the PTTL A's last renewal left at the
      pause), and claimed every entry A had pending (XINFO CONSUMERS: A has 0 pending) before A
      resumes;
    - fencing, directly: A is continued while B is stopped; until A logs that it stopped the
      queue, the group's pending entries do not change (A acknowledged nothing);
    - A completes at most one handler after it resumes: the message after the last one it
      completed before the pause (its handler was running at the pause), which B (resumed from
      the oldest entry A left unacknowledged and now past it) had already handled; A logs that it
      stopped the queue and handles nothing more until the end;
    - every message handled, per key first handlings in seq order, no pending entries left,
      lag 0; both exit 0 on SIGTERM.
    """
    ttl = 2.0
    settings = make_settings(
        server.url, namespace, lease_ttl=ttl, rebalance_interval=0.2, block_seconds=0.3,
        default_queues=1, fetch_batch=FETCH_BATCH, shutdown_grace=5.0,
    )  # fmt: skip
    streams = queue_streams(namespace, TOPIC, 1)
    stream = streams[0]
    out = tmp_path / "handled.records"
    env = worker_env(
        settings, RECORDER_TOPIC=TOPIC, RECORDER_GROUP=GROUP, RECORDER_SLEEP=FENCE_SLEEP
    )
    app = rmq.App(settings)
    started = time.monotonic()
    async with app:
        await app.context.topics.create(TOPIC, 1)
        bodies = [
            {"key": f"k{k}", "seq": s} for s in range(FENCE_PER_KEY) for k in range(FENCE_KEYS)
        ]
        results = await app.send_batch(TOPIC, bodies)
    sent_items = {(b["key"], b["seq"]) for b in bodies}
    assert len(results) == len(sent_items)

    with OrderlyPool(tmp_path, env, out) as pool:
        a = pool.start("a", ORDERLY_MEMBER="zz-a")
        await a.wait_ready(30)

        def a_progressed() -> bool:
            assert a.running, a.describe()
            return sum(h.pid == a.pid for h in read_handled(out)) >= A_BEFORE_PAUSE

        await wait_for(a_progressed, 30, f"A to handle {A_BEFORE_PAUSE} messages", 0.02)
        a.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        await a.wait_state(stopped=True)
        lease_key = NamespaceKeys(namespace).queue(TOPIC, 0).lease(GROUP)
        a_lease_left = int(client.pttl(lease_key)) / 1000  # what A's last renewal left
        lease_checked_at = time.monotonic()
        assert a_lease_left > 0, "A did not hold the lease when it was paused"
        assert is_member(lease_holders(client, namespace, 1)[0], a.pid)
        a_lines_at_pause = sum(h.pid == a.pid for h in read_handled(out))
        assert a_lines_at_pause < len(sent_items)

        b = pool.start("b", ORDERLY_MEMBER="aa-b")
        await b.wait_ready(30)

        def b_holds() -> bool:
            assert b.running, b.describe()
            return is_member(lease_holders(client, namespace, 1)[0], b.pid)

        await wait_for(b_holds, 20, "B to take the lease", interval=0.02)
        b_acquired_after = time.monotonic() - paused_at
        early = a_lease_left - (time.monotonic() - lease_checked_at)
        assert early <= 0.05, f"B got the lease {early:.2f}s before A's expired"

        def b_progressed() -> bool:
            assert b.running, b.describe()
            return sum(h.pid == b.pid for h in read_handled(out)) >= a_lines_at_pause + B_AHEAD

        await wait_for(b_progressed, 20, "B to get past where A was paused", 0.02)
        pending_by_consumer = consumers_info(client, stream)
        a_consumer = next(n for n in pending_by_consumer if n.startswith("zz-a-"))
        b_consumer = next(n for n in pending_by_consumer if n.startswith("aa-b-"))
        assert pending_by_consumer[a_consumer] == 0, f"B did not claim A's: {pending_by_consumer}"

        # Freeze B, resume A: anything that leaves the pending list now is A's doing.
        b.send_signal(signal.SIGSTOP)
        await b.wait_state(stopped=True)
        frozen_pending = pending_entries(client, streams, GROUP)
        assert frozen_pending, "B holds no pending entry: nothing for A to acknowledge wrongly"
        a_lines_before_resume = sum(h.pid == a.pid for h in read_handled(out))
        assert a_lines_before_resume == a_lines_at_pause
        a.send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()

        def a_noticed() -> bool:
            assert a.running, a.describe()
            return any(marker in a.log_text() for marker in STOP_MARKERS)

        try:
            # B stays frozen for less than its lease validity (0.8 x ttl), so it keeps the queue
            await wait_for(a_noticed, ttl * 0.6, "A to notice it lost the queue", 0.02)
            noticed_while_b_frozen = True
        except AssertionError:
            noticed_while_b_frozen = False
        pending_while_b_frozen = pending_entries(client, streams, GROUP)
        b.send_signal(signal.SIGCONT)
        await b.wait_state(stopped=False)
        assert pending_while_b_frozen == frozen_pending, (
            f"pending changed while only A ran: acknowledged "
            f"{sorted(frozen_pending - pending_while_b_frozen)[:10]}"
        )

        def all_handled() -> bool:
            assert a.running, a.describe()
            assert b.running, b.describe()
            return {(h.key, h.seq) for h in read_handled(out)} >= sent_items

        await wait_for(all_handled, 40, "every message to be handled", interval=0.1)
        await wait_for(lambda: group_pending(client, streams, GROUP) == 0, 15, "no pending entries")
        await wait_for(a_noticed, 10, "A to log that it lost the queue")
        handled = read_handled(out)
        elapsed = time.monotonic() - started

        a_after = [h for h in handled if h.pid == a.pid][
            a_lines_before_resume:
        ]  # file order: A's lines after the resume
        assert len(a_after) <= 1, f"A handled {len(a_after)} messages after resuming: {a_after}"
        offsets = {
            (body["key"], body["seq"]): r.offset for body, r in zip(bodies, results, strict=True)
        }
        order = sorted(offsets, key=lambda item: _entry_key(offsets[item]))
        a_last = [h for h in handled if h.pid == a.pid][a_lines_before_resume - 1]
        in_flight = order[order.index((a_last.key, a_last.seq)) + 1]
        for late in a_after:
            assert (late.key, late.seq) == in_flight, f"A's late {late} is not its in-flight one"
            index = handled.index(late)
            earlier = {(h.key, h.seq) for h in handled[:index] if h.pid == b.pid}
            assert (late.key, late.seq) in earlier, "A's late message was not B's already"
        assert {(h.key, h.seq) for h in handled} == sent_items
        violations = order_violations(handled)
        assert not violations, "\n".join(violations[:20])
        assert is_member(lease_holders(client, namespace, 1)[0], b.pid)

        final = consumers_info(client, stream)
        assert final.get(a_consumer) == 0 and final.get(b_consumer) == 0, final
        assert group_pending(client, streams, GROUP) == 0
        assert group_lag(client, streams, GROUP) == 0
        log_a = a.log_text()
        markers = [m for m in STOP_MARKERS if m in log_a]

        for member in (a, b):
            member.send_signal(signal.SIGTERM)
        for member in (a, b):
            assert await member.wait_exit(20) == 0, member.describe()
        by_pid = Counter(h.pid for h in handled)
        print(
            f"fencing: {len(sent_items)} messages in {elapsed:.1f}s; A paused "
            f"{resumed_at - paused_at:.1f}s (B took over after {b_acquired_after:.1f}s); "
            f"A completed {len(a_after)} after resuming; A noticed while B frozen: "
            f"{noticed_while_b_frozen} ({markers}); {sum(duplicates(handled).values())} "
            f"duplicate(s); A {by_pid[a.pid]}, B {by_pid[b.pid]}"
        )
