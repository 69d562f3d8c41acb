"""dead_letter.lua: XACK + XADD to the group's DLQ with metadata and "o:"-prefixed fields; or,
for a broadcasting instance (no group read it), the copy alone."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import add_entries, call, connect, entries, group_info, pending

GROUP = "g"
META = ["reason", "max-deliveries", "error", "ValueError: boom", "topic", "orders", "queue", "0"]


async def dead_letter(
    client: Redis,
    q: QueueKeys,
    entry_id: str,
    meta: list[str] = META,
    group: str = GROUP,
    how: str = "ack",
) -> Any:
    return await call(
        client, "dead_letter", [q.stream, q.dlq(group)], [group, entry_id, how, *meta]
    )


async def delivered(client: Redis, q: QueueKeys, fields: dict[str, str] | None = None) -> str:
    """One entry, delivered to consumer c1 of GROUP (so it is pending)."""
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    entry_id = await client.xadd(q.stream, fields or {"i": "M1", "t": "tag", "d": "body"})  # type: ignore[arg-type]
    await client.xreadgroup(GROUP, "c1", {q.stream: ">"})
    return str(entry_id)


async def test_moves_pending_entry(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    dlq_id = await dead_letter(client, q, entry_id)
    assert isinstance(dlq_id, str)
    ((got_id, fields),) = await entries(client, q.dlq(GROUP))
    assert got_id == dlq_id
    assert list(fields.items()) == [
        ("reason", "max-deliveries"),
        ("error", "ValueError: boom"),
        ("topic", "orders"),
        ("queue", "0"),
        ("o:i", "M1"),
        ("o:t", "tag"),
        ("o:d", "body"),
    ]
    # acknowledged, but the original entry stays in the stream
    assert await pending(client, q.stream, GROUP) == {}
    assert (await group_info(client, q.stream, GROUP))["pending"] == 0
    assert [e[0] for e in await entries(client, q.stream)] == [entry_id]


async def test_entry_of_another_client_is_kept_exactly(redis_url: str, q: QueueKeys) -> None:
    async with connect(redis_url, decode=False) as raw:
        await raw.xgroup_create(q.stream, GROUP, "0", mkstream=True)
        body = bytes(range(256))
        raw_id: Any = await raw.xadd(q.stream, {b"payload": body, b"x": b""})
        entry_id = raw_id.decode()
        await raw.xreadgroup(GROUP, "c1", {q.stream: ">"})
        dlq_id = await dead_letter(raw, q, entry_id, ["reason", "undecodable"])
        assert isinstance(dlq_id, bytes)
        ((_, fields),) = await entries(raw, q.dlq(GROUP))
    assert list(fields.items()) == [
        (b"reason", b"undecodable"),
        (b"o:payload", body),
        (b"o:x", b""),
    ]


async def test_not_pending_writes_nothing(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    await client.xack(q.stream, GROUP, entry_id)
    assert await dead_letter(client, q, entry_id) is None
    assert not await client.exists(q.dlq(GROUP))


async def test_never_delivered_entry_writes_nothing(client: Redis, q: QueueKeys) -> None:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    (entry_id,) = await add_entries(client, q.stream, 1)
    assert await dead_letter(client, q, entry_id) is None
    assert not await client.exists(q.dlq(GROUP))
    assert await dead_letter(client, q, "1-1") is None


async def test_second_call_writes_nothing_twice(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    first = await dead_letter(client, q, entry_id)
    assert first
    assert await dead_letter(client, q, entry_id) is None
    assert await client.xlen(q.dlq(GROUP)) == 1


async def test_only_the_named_group_is_acknowledged(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    await client.xgroup_create(q.stream, "other", "0")
    await client.xreadgroup("other", "c9", {q.stream: ">"})
    assert await dead_letter(client, q, entry_id)
    assert await pending(client, q.stream, GROUP) == {}
    assert set(await pending(client, q.stream, "other")) == {entry_id}
    assert not await client.exists(q.dlq("other"))


async def test_pending_of_any_consumer(client: Redis, q: QueueKeys) -> None:
    """Dead-lettering is a group decision: the owner of the pending entry does not matter."""
    entry_id = await delivered(client, q)
    await client.xclaim(q.stream, GROUP, "c2", 0, [entry_id], justid=True)
    assert await dead_letter(client, q, entry_id)
    assert await pending(client, q.stream, GROUP) == {}


async def test_deleted_entry_is_recorded_as_lost(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    await client.xdel(q.stream, entry_id)
    dlq_id = await dead_letter(
        client, q, entry_id, ["reason", "max-deliveries", "offset", entry_id]
    )
    assert dlq_id
    ((_, fields),) = await entries(client, q.dlq(GROUP))
    assert fields == {"reason": "max-deliveries", "offset": entry_id, "lost": "1"}
    assert await pending(client, q.stream, GROUP) == {}


async def test_trimmed_entry_is_recorded_as_lost(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    await add_entries(client, q.stream, 3)
    await client.xtrim(q.stream, maxlen=2, approximate=False)
    assert await dead_letter(client, q, entry_id, ["reason", "x"])
    ((_, fields),) = await entries(client, q.dlq(GROUP))
    assert fields == {"reason": "x", "lost": "1"}


async def test_no_metadata(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q, {"d": "only"})
    assert await dead_letter(client, q, entry_id, [])
    ((_, fields),) = await entries(client, q.dlq(GROUP))
    assert fields == {"o:d": "only"}


async def test_dlq_entries_accumulate_in_order(client: Redis, q: QueueKeys) -> None:
    await client.xgroup_create(q.stream, GROUP, "0", mkstream=True)
    ids = await add_entries(client, q.stream, 3)
    await client.xreadgroup(GROUP, "c1", {q.stream: ">"})
    dlq_ids = [await dead_letter(client, q, entry_id, ["offset", entry_id]) for entry_id in ids]
    stored = await entries(client, q.dlq(GROUP))
    assert [e[0] for e in stored] == dlq_ids
    assert [e[1]["offset"] for e in stored] == ids
    assert [e[1]["o:n"] for e in stored] == ["0", "1", "2"]


async def test_dlq_is_per_group(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    assert await dead_letter(client, q, entry_id)
    assert await client.exists(q.dlq(GROUP))
    assert not await client.exists(q.dlq("other"))


async def test_odd_metadata_fails_without_losing_the_entry(client: Redis, q: QueueKeys) -> None:
    """A failing XADD must not leave the entry acknowledged and nowhere (validate, then write)."""
    entry_id = await delivered(client, q)
    with pytest.raises(ScriptError):
        await dead_letter(client, q, entry_id, ["reason"])
    assert set(await pending(client, q.stream, GROUP)) == {entry_id}
    assert not await client.exists(q.dlq(GROUP))


async def test_copy_records_an_entry_no_group_read(client: Redis, q: QueueKeys) -> None:
    """Broadcasting reads without a group: "copy" writes the dead letter and acknowledges
    nothing (there is no pending entry), even where a group of that name exists."""
    entry_id = await delivered(client, q)
    dlq_id = await dead_letter(client, q, entry_id, ["reason", "max_retries"], how="copy")
    assert dlq_id
    ((_, fields),) = await entries(client, q.dlq(GROUP))
    assert fields == {"reason": "max_retries", "o:i": "M1", "o:t": "tag", "o:d": "body"}
    assert set(await pending(client, q.stream, GROUP)) == {entry_id}


async def test_copy_of_an_entry_never_delivered(client: Redis, q: QueueKeys) -> None:
    (entry_id,) = await add_entries(client, q.stream, 1)
    assert await dead_letter(client, q, entry_id, ["reason", "undecodable"], how="copy")
    ((_, fields),) = await entries(client, q.dlq(GROUP))
    assert fields == {"reason": "undecodable", "o:n": "0"}


async def test_copy_of_a_trimmed_entry_is_recorded_as_lost(client: Redis, q: QueueKeys) -> None:
    assert await dead_letter(client, q, "1-1", ["reason", "x"], how="copy")
    ((_, fields),) = await entries(client, q.dlq(GROUP))
    assert fields == {"reason": "x", "lost": "1"}


async def test_unknown_how_without_a_lease_is_refused(client: Redis, q: QueueKeys) -> None:
    entry_id = await delivered(client, q)
    with pytest.raises(ScriptError, match="ack or copy"):
        await dead_letter(client, q, entry_id, how="token-without-lease")
    assert set(await pending(client, q.stream, GROUP)) == {entry_id}
    assert not await client.exists(q.dlq(GROUP))


async def test_fenced_by_the_lease(client: Redis, q: QueueKeys) -> None:
    """With the orderly lease key, ARGV[3] is the token: a stale holder writes nothing."""
    entry_id = await delivered(client, q)
    await client.set(q.lease(GROUP), "current-token")
    keys = [q.stream, q.dlq(GROUP), q.lease(GROUP)]
    assert await call(client, "dead_letter", keys, [GROUP, entry_id, "old-token", *META]) == -1
    assert not await client.exists(q.dlq(GROUP))
    assert set(await pending(client, q.stream, GROUP)) == {entry_id}
    assert await call(client, "dead_letter", keys, [GROUP, entry_id, "current-token", *META])
    assert await pending(client, q.stream, GROUP) == {}
