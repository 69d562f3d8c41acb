"""Every Lua script call rmq makes: the one module that builds their KEYS and ARGV and reads their
replies (the shape of BullMQ's Scripts class, and of what `rmq/transaction/store.py` did alone).

A method per script returns a `Call`: the EVALSHA command and how to read its reply. Building and
running are apart, so a caller can put many calls in one round trip (a pipeline, a `Wire`, the
transaction batcher) and still get each result typed:

```python
call = ctx.calls.pull_ack("orders", 2, "billing", ["1714000000000-0"])
acked = await ctx.calls.run(call)                  # on the pooled client
replies = await wire.execute([c.command for c in calls])
results = [c.result(r) for c, r in zip(calls, replies)]   # typed, or raises an rmq error
```

`Call.result` turns an error reply into an rmq error (`ScriptError` for a script's own `rmq:`
errors, `BrokerError`/`BrokerUnavailable` for the rest). Callers that retry transient failures
check the raw reply with `is_transient` before asking for the result.

Every call names the keys of one queue (one Redis Cluster slot), or one key outside any queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .connection import RedisConnection, broker_error
from .errors import RMQError
from .keys import NamespaceKeys, QueueKeys
from .scripts import script_error as raw_script_error
from .settings import Settings
from .wire import LARGE_ARGUMENT, Large, Multi

__all__ = [
    "FENCED",
    "Call",
    "ClaimedHalf",
    "HalfClaims",
    "PromoteReply",
    "Received",
    "ScriptCalls",
    "Transport",
    "script_error",
]

T = TypeVar("T")
Splitter = Callable[[Any, Sequence[int]], list[Any] | None]
"""(a merged call's reply, messages per merged call) -> one reply per call, or None."""

FENCED = -1
"""What a fenced script call (orderly lease checked) answers when the lease is not held."""


class Transport(Protocol):
    """Anything that runs commands in one round trip: `Wire`, `WireSet`."""

    async def execute(
        self, commands: Sequence[tuple[Any, ...]], seconds: float | None = None
    ) -> list[Any]: ...


class Call(Generic[T]):
    """One script call: its EVALSHA command and how to read its reply.

    Calls of a mergeable script (prepare, commit) with equal `command[:head]` may share one
    script call: their values (`command[head:]`, `count` messages) are concatenated and `split`
    cuts the merged reply back into one reply per call.
    """

    __slots__ = ("command", "count", "head", "name", "read", "split")

    def __init__(
        self,
        name: str,
        command: tuple[Any, ...],
        read: Callable[[Any], T],
        *,
        head: int = 0,
        count: int = 1,
        split: Splitter | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.read = read
        self.head = head
        self.count = count
        self.split = split

    def result(self, reply: Any) -> T:
        """The reply read, or the error reply raised as an rmq error."""
        if isinstance(reply, BaseException):
            raise script_error(self.name, reply)
        return self.read(reply)


def script_error(name: str, exc: BaseException) -> BaseException:
    """An error reply of script `name` as an rmq error (rmq errors pass through)."""
    wrapped = raw_script_error(name, exc)
    return wrapped if isinstance(wrapped, RMQError) else broker_error(exc, f"script {name}")


# ---------------------------------------------------------------------- reply types


@dataclass(frozen=True, slots=True)
class PromoteReply:
    moved: int
    wait_ms: int
    """Until the next member is due (0: more are due now; -1: none is scheduled)."""


@dataclass(frozen=True, slots=True)
class Received:
    """What one `pull_receive` call handed out on one queue."""

    last_id: str
    """The queue's last entry id when it ran ("0-0" when empty)."""
    entries: list[tuple[bytes, dict[bytes, bytes], int]]
    """(entry id, fields, delivery count) per message."""


@dataclass(frozen=True, slots=True)
class ClaimedHalf:
    """A half message claimed for a check-back: its stored fields and which check this is."""

    msg_id: str
    checks: int
    fields: list[bytes]


@dataclass(frozen=True, slots=True)
class HalfClaims:
    """One check_claim call: what was claimed or discarded, and how long until more is due."""

    wait_ms: int
    discarded: list[str]
    claimed: list[ClaimedHalf]


# ---------------------------------------------------------------------- readers


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bool(reply: Any) -> bool:
    return bool(reply)


def _int(reply: Any) -> int:
    return int(reply)


def _texts(reply: Any) -> list[str]:
    return [_text(x) for x in reply]


def _offsets(reply: Any) -> list[str]:
    return [x.decode() for x in reply]


def _new_id(reply: Any) -> str | None:
    """A new entry id; None for false or a negative status."""
    return _text(reply) if isinstance(reply, bytes | str) else None


def _raw(reply: Any) -> Any:
    return reply


def _fenced_text(reply: Any) -> str | int | None:
    """A dead letter's entry id; None when it was not pending; FENCED when fenced."""
    if reply == FENCED:
        return FENCED
    return _text(reply) if reply else None


def _scheduled(reply: Any) -> list[tuple[str, int]]:
    """(entry id or "" while delayed, due ms) per message."""
    pairs = range(0, len(reply), 2)
    return [(_text(reply[i]) if reply[i] else "", int(reply[i + 1])) for i in pairs]


def _promoted(reply: Any) -> PromoteReply:
    return PromoteReply(int(reply[0]), int(reply[1]))


def _received(reply: Any) -> Received:
    entries = []
    for i in range(2, len(reply), 3):
        flat = reply[i + 1]
        entries.append((reply[i], dict(zip(flat[::2], flat[1::2], strict=True)), int(reply[i + 2])))
    return Received(_text(reply[1]) if reply[1] else "0-0", entries)


def _half_claims(reply: Any) -> HalfClaims:
    rest = reply[2:]
    claimed = [
        ClaimedHalf(_text(rest[i]), int(rest[i + 1]), rest[i + 2]) for i in range(0, len(rest), 3)
    ]
    return HalfClaims(int(reply[0]), [_text(m) for m in reply[1]], claimed)


def _cut(reply: Any, counts: Sequence[int], width: int, skip: int) -> list[Any] | None:
    """Cut `reply[skip:]` into parts of `width * count` values, each with `reply[:skip]` first."""
    if not isinstance(reply, list) or len(reply) != skip + width * sum(counts):
        return None
    parts, start = [], skip
    for n in counts:
        parts.append([*reply[:skip], *reply[start : start + width * n]])
        start += width * n
    return parts


def _split_prepare(reply: Any, counts: Sequence[int]) -> list[Any] | None:
    """A merged prepare's reply (one outcome per message) -> one reply per call."""
    return _cut(reply, counts, 1, 0)


def _split_commit(reply: Any, counts: Sequence[int]) -> list[Any] | None:
    """A merged commit's reply ("ok" and a pair per message) -> one reply per call; None when
    the commit changed nothing (some message was rolled back, unknown or of another group)."""
    if not isinstance(reply, list) or not reply or reply[0] != b"ok":
        return None
    return _cut(reply, counts, 2, 1)


# ---------------------------------------------------------------------- the calls


class ScriptCalls:
    """One method per script; `run`/`run_all` execute calls on the pooled client."""

    def __init__(self, conn: RedisConnection, keys: NamespaceKeys, settings: Settings) -> None:
        self._conn = conn
        self._scripts = conn.scripts
        self._keys = keys
        self._settings = settings
        self._queues: dict[tuple[str, int], QueueKeys] = {}
        self._send_keys: dict[tuple[str, int, str], tuple[str, str]] = {}
        self._tx_heads: dict[tuple[str, int, str], tuple[tuple[Any, ...], ...]] = {}
        self._ttl_ms = int(settings.dedup_window * 1000)

    def queue(self, topic: str, queue_id: int) -> QueueKeys:
        """The keys of one queue (cached)."""
        keys = self._queues.get((topic, queue_id))
        if keys is None:
            keys = self._queues[topic, queue_id] = self._keys.queue(topic, queue_id)
        return keys

    def _call(
        self, name: str, keys: Sequence[str], args: Sequence[Any], read: Callable[[Any], T],
        **merge: Any,
    ) -> Call[T]:  # fmt: skip
        command = self._scripts[name].evalsha_args(keys, args)
        return Call(name, command, read, **merge)

    # ------------------------------------------------------------------ running

    async def run(self, call: Call[T]) -> T:
        """Run one call on the pooled client; its result (or an rmq error)."""
        (reply,) = await self._scripts.pipeline(self._conn.commands, [call.command])
        return call.result(reply)

    async def run_all(self, calls: Sequence[Call[Any]]) -> list[Any]:
        """Run calls in one round trip on the pooled client; raw replies (errors included)."""
        return await self._scripts.pipeline(self._conn.commands, [c.command for c in calls])

    async def results(self, calls: Sequence[Call[T]]) -> list[T]:
        """Run calls in one round trip on the pooled client; their results (the first error
        raises, after every call ran)."""
        replies = await self.run_all(calls)
        return [c.result(r) for c, r in zip(calls, replies, strict=True)]

    # ------------------------------------------------------------------ producing

    def send(
        self, topic: str, queue_id: int, session: str, retry: bool, values: list[Any]
    ) -> Call[list[str]]:
        """Append messages (6 values each) to a queue; one entry id per message."""
        keys = self._send_keys.get((topic, queue_id, session))
        if keys is None:
            queue = self.queue(topic, queue_id)
            keys = self._send_keys[topic, queue_id, session] = (queue.stream, queue.dedup(session))
        args = [self._ttl_ms, "1" if retry else "0", *values]
        return Call("send", self._scripts["send"].evalsha_args(keys, args), _offsets)

    def send_large(
        self, topic: str, queue_id: int, session: str, values: list[Any], count: int
    ) -> Call[list[str]]:
        """`send` for a chunk of large bodies: `mark_sent` records the chunk, then plain XADDs
        append it, all in one MULTI, so the bodies never pass through Lua (which costs Redis
        more than a millisecond per MiB). First attempts only: a retry goes through `send`, which
        finds the chunk from the record."""
        queue = self.queue(topic, queue_id)
        mark = self._scripts["mark_sent"]
        commands: list[tuple[Any, ...]] = [
            ("EVAL", mark.source, 1, queue.dedup(session), self._ttl_ms, values[0])
        ]
        for j in range(0, len(values), 6):
            msg_id, tag, keys, props, flags, data = values[j : j + 6]
            xadd = ("XADD", queue.stream, "*", "i", msg_id, "t", tag, "k", keys, "p", props,
                    "c", flags, "d", data)  # fmt: skip
            commands.append(Large(xadd) if len(data) >= LARGE_ARGUMENT else xadd)

        def read(reply: Any) -> list[str]:
            if isinstance(reply, BaseException):
                raise script_error("send", reply)
            for item in reply:
                if isinstance(item, BaseException):
                    raise script_error("send", item)
            return [x.decode() for x in reply[1:]]

        return Call("send", Multi(commands), read)

    def schedule(
        self, topic: str, queue_id: int, session: str, retry: bool, values: list[Any]
    ) -> Call[list[tuple[str, int]]]:
        """Schedule delayed messages (when kind, when value, then 6 values each); per message
        (entry id, due ms), the entry id "" while it waits."""
        q = self.queue(topic, queue_id)
        keys = (q.stream, q.delay, q.delay_payload, q.dedup(f"{session}:d"))
        args = [self._ttl_ms, "1" if retry else "0", self._keys.wake(topic), *values]
        return self._call("schedule", keys, args, _scheduled)

    def cancel_delayed(self, topic: str, queue_id: int, msg_id: str) -> Call[bool]:
        q = self.queue(topic, queue_id)
        return self._call("cancel_delayed", (q.delay, q.delay_payload), (msg_id,), _bool)

    def promote_delayed(self, topic: str, queue_id: int, limit: int) -> Call[PromoteReply]:
        """Move due delayed messages of a queue into it."""
        q = self.queue(topic, queue_id)
        return self._call("promote", (q.delay, q.delay_payload, q.stream), (limit,), _promoted)

    def promote_retries(
        self, topic: str, queue_id: int, group: str, limit: int
    ) -> Call[PromoteReply]:
        """Move a group's due retries on a queue into its retry stream."""
        q = self.queue(topic, queue_id)
        keys = (q.retry(group), q.retry_payload(group), q.retry_stream(group))
        return self._call("promote", keys, (limit,), _promoted)

    # ------------------------------------------------------------------ consuming

    def declare_group(self, stream: str, group: str, start: str) -> Call[bool]:
        """Create `group` on a queue stream or a retry stream; True when it was created."""
        return self._call("declare_group", (stream,), (group, start), _bool)

    def retry(
        self, topic: str, queue_id: int, group: str, stream: str, consumer: str,
        items: Sequence[tuple[str, int]],
    ) -> Call[list[int]]:  # fmt: skip
        """Acknowledge deliveries of `stream` and schedule each (entry id, delay ms) for a retry;
        per entry 1 scheduled, 0 not pending for this consumer, -1 its payload was gone."""
        q = self.queue(topic, queue_id)
        args: list[Any] = [group, consumer, self._keys.wake(topic)]
        for offset, delay_ms in items:
            args += (offset, delay_ms)
        keys = (stream, q.retry(group), q.retry_payload(group))
        return self._call("retry", keys, args, lambda r: [int(x) for x in r])

    def dead_letter(
        self, topic: str, queue_id: int, group: str, stream: str, entry_id: str,
        meta: Sequence[str], *, copy: bool = False, lease: tuple[str, str] | None = None,
    ) -> Call[str | int | None]:  # fmt: skip
        """Move a delivered entry to the group's DLQ (acknowledged in the same script). `copy`:
        it was read without a group (broadcasting): only copy it. `lease` (key, token): fenced.
        Returns the dead-letter id; None when it was no longer pending; FENCED."""
        keys: tuple[str, ...] = (stream, self.queue(topic, queue_id).dlq(group))
        how = "copy" if copy else "ack"
        if lease is not None:
            keys, how = (*keys, lease[0]), lease[1]
        return self._call("dead_letter", keys, (group, entry_id, how, *meta), _fenced_text)

    def fenced_ack(
        self, stream: str, lease_key: str, group: str, token: str, ids: Sequence[str]
    ) -> Call[int]:
        """Acknowledge under an orderly lease: how many were acked, or FENCED."""
        return self._call("fenced_ack", (stream, lease_key), (group, token, *ids), _int)

    def set_idle(
        self, stream: str, group: str, consumer: str, idle_ms: int, ids: Sequence[Any]
    ) -> Call[list[str]]:
        """Set the idle time of entries this consumer owns; the ids no longer its own."""
        return self._call("set_idle", (stream,), (group, consumer, idle_ms, *ids), _texts)

    def reap_consumers(self, stream: str, group: str, min_idle_ms: int, keep: str) -> Call[int]:
        """Delete consumers idle longer than `min_idle_ms` that own nothing (never `keep`)."""
        return self._call("reap_consumers", (stream,), (group, min_idle_ms, keep), _int)

    def drop_consumer(self, stream: str, group: str, consumer: str) -> Call[int]:
        """Delete `consumer` if it owns no pending entry (1), else keep it (0)."""
        return self._call("drop_consumer", (stream,), (group, consumer), _int)

    def lease(self, key: str, op: str, token: str, ttl_ms: int) -> Call[bool]:
        """Acquire, renew or release an owner-checked lease (orderly queues, broadcast slots)."""
        return self._call("lease", (key,), (op, token, ttl_ms), _bool)

    def heartbeat(self, topic: str, group: str, member: str, *extra: str) -> Call[list[str]]:
        """Record (or with "leave", remove) a member of an orderly group; the live members."""
        ttl = int(self._settings.lease_ttl * 1000)
        return self._call("heartbeat", (self._keys.members(topic, group),), (member, ttl, *extra),
                          _texts)  # fmt: skip

    def consumer_beat(self, owner: str, ttl_ms: int, *, leave: bool = False) -> Call[list[str]]:
        """Record (or with `leave`, remove) an app whose consumers are live; the live apps."""
        extra = ("leave",) if leave else ()
        return self._call("heartbeat", (self._keys.live_consumers,), (owner, ttl_ms, *extra),
                          _texts)  # fmt: skip

    def claim_slot(self, group: str, instance: str, token: str) -> Call[bool]:
        """Claim or renew a broadcasting instance id's slot."""
        key = self._keys.broadcast_slot(group, instance)
        ttl = int(self._settings.lease_ttl * 1000)
        return self._call("claim_slot", (key,), (token, ttl), _bool)

    def release_slot(self, group: str, instance: str, token: str) -> Call[bool]:
        return self.lease(self._keys.broadcast_slot(group, instance), "release", token, 1)

    def broadcast_commit(
        self, topic: str, queue_id: int, group: str, instance: str, expected: str, new: str
    ) -> Call[bool]:
        """Move a broadcasting instance's offset from `expected` to `new` (compare and set)."""
        key = self.queue(topic, queue_id).broadcast_offsets(group)
        return self._call("bcast_commit", (key,), (instance, expected, new), _bool)

    def pull_receive(
        self, topic: str, queue_id: int, group: str, consumer: str, count: int, invisible_ms: int
    ) -> Call[Received]:
        q = self.queue(topic, queue_id)
        keys = (q.stream, q.invisible(group))
        return self._call("pull_receive", keys, (group, consumer, count, invisible_ms), _received)

    def pull_ack(self, topic: str, queue_id: int, group: str, ids: Sequence[str]) -> Call[int]:
        q = self.queue(topic, queue_id)
        return self._call("pull_ack", (q.stream, q.invisible(group)), (group, *ids), _int)

    def pull_change_invisible(
        self, topic: str, queue_id: int, group: str, consumer: str, entry_id: str, ms: int
    ) -> Call[bool]:
        q = self.queue(topic, queue_id)
        keys, args = (q.stream, q.invisible(group)), (group, consumer, entry_id, ms)
        return self._call("pull_change_invisible", keys, args, _bool)

    # ------------------------------------------------------------------ transactions

    def _half_keys(
        self, topic: str, queue_id: int, group: str
    ) -> tuple[QueueKeys, tuple[str, ...]]:
        q = self.queue(topic, queue_id)
        return q, (q.half, q.half_group(group), q.half_payload, q.half_done)

    def _heads(self, topic: str, queue_id: int, group: str) -> tuple[tuple[Any, ...], ...]:
        """The commands of prepare and commit without their per-message values, per queue and
        producer group (built once: a transactional send uses both)."""
        heads = self._tx_heads.get((topic, queue_id, group))
        if heads is None:
            q, half = self._half_keys(topic, queue_id, group)
            immunity = int(self._settings.transaction_check_immunity * 1000)
            prepare = self._scripts["prepare"].evalsha_args(half, (group, immunity))
            keys = (q.stream, q.delay, q.delay_payload, *half, q.half_done_expiry)
            commit = self._scripts["commit"].evalsha_args(
                keys, (group, self._ttl_ms, self._keys.wake(topic))
            )
            heads = self._tx_heads[topic, queue_id, group] = (prepare, commit)
        return heads

    def prepare(
        self, topic: str, queue_id: int, group: str, values: Sequence[Any], count: int
    ) -> Call[list[Any]]:
        """Store half messages (8 values each); per message 1, 0 (a retry) or the outcome it
        was resolved with (bytes). Mergeable."""
        head = self._heads(topic, queue_id, group)[0]
        return Call("prepare", (*head, *values), list, head=len(head), count=count,
                    split=_split_prepare)  # fmt: skip

    def commit(self, topic: str, queue_id: int, group: str, msg_ids: Sequence[str]) -> Call[Any]:
        """Commit half messages of one queue, all or none. The raw reply ({"ok", entry id or
        false, due ms, ...} or a status and a msg_id): see `HalfStore`. Mergeable."""
        head = self._heads(topic, queue_id, group)[1]
        return Call("commit", (*head, *msg_ids), _raw, head=len(head), count=len(msg_ids),
                    split=_split_commit)  # fmt: skip

    def rollback(self, topic: str, queue_id: int, group: str, msg_ids: Sequence[str]) -> Call[Any]:
        """Roll back half messages of one queue; the raw reply (see `HalfStore`)."""
        q, half = self._half_keys(topic, queue_id, group)
        return self._call("rollback", (*half, q.half_done_expiry), (group, self._ttl_ms, *msg_ids),
                          _raw)  # fmt: skip

    def check_claim(self, topic: str, queue_id: int, group: str, limit: int) -> Call[HalfClaims]:
        """Claim a producer group's due half messages for check-back (or discard them)."""
        s = self._settings
        q, half = self._half_keys(topic, queue_id, group)
        keys = (*half, q.half_done_expiry, q.half_discarded(group))
        args = (group, int(s.transaction_check_interval * 1000), s.transaction_max_checks, limit,
                self._ttl_ms)  # fmt: skip
        return self._call("check_claim", keys, args, _half_claims)

    def half_list(
        self, topic: str, queue_id: int, group: str | None, limit: int, cursor: tuple[Any, Any]
    ) -> Call[Any]:
        """A page of a queue's half messages (of every group, or one); the raw reply."""
        q = self.queue(topic, queue_id)
        index = q.half_group(group) if group else q.half
        return self._call("half_list", (index, q.half_payload), (group or "", limit, *cursor), _raw)

    # ------------------------------------------------------------------ administration

    def reset_offset(
        self, topic: str, queue_id: int, group: str, target: str, count_limit: int
    ) -> Call[tuple[str, int | None]]:
        """Move a group on one queue; (new last-delivered id, entries-read or None)."""

        def read(reply: Any) -> tuple[str, int | None]:
            entries_read = int(reply[1])
            return _text(reply[0]), None if entries_read < 0 else entries_read

        stream = self.queue(topic, queue_id).stream
        return self._call("reset_offset", (stream,), (group, target, count_limit), read)

    def find_entries(
        self, topic: str, queue_id: int, cursor: str, end: str, chunk: int, kind: str, value: str
    ) -> Call[tuple[str, list[tuple[bytes, Any]]]]:
        """One slice of a stream search; (next cursor or "", [(entry id, fields)])."""

        def read(reply: Any) -> tuple[str, list[tuple[bytes, Any]]]:
            return _text(reply[0]), [(reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]

        stream = self.queue(topic, queue_id).stream
        return self._call("find_entries", (stream,), (cursor, end, chunk, kind, value), read)

    def dlq_replay(
        self, topic: str, queue_id: int, group: str, dead_id: str, to: str
    ) -> Call[str | None]:
        """Move a dead letter back (to the group's retry stream, or to the queue for every
        group); the new entry id, or None when it was gone already or its payload was lost."""
        q = self.queue(topic, queue_id)
        target = q.retry_stream(group) if to == "group" else q.stream
        return self._call("dlq_replay", (q.dlq(group), target), (dead_id, to), _new_id)

    def trim(
        self, topic: str, queue_id: int, groups: Sequence[str], args: Sequence[Any]
    ) -> Call[list[Any]]:
        """Trim one queue's stream and its groups' retry streams; one raw row per stream."""
        q = self.queue(topic, queue_id)
        keys = [q.stream]
        for group in groups:
            keys += [q.retry_stream(group), q.broadcast_offsets(group)]
        return self._call("trim", keys, (*args, *groups), list)
