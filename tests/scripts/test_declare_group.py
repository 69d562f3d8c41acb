"""declare_group.lua: create a group at last/first/epoch-ms, idempotently, with an exact lag."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import add_entries, call, group_info, read_ids


async def declare(client: Redis, q: QueueKeys, group: str, start: str) -> int:
    result = await call(client, "declare_group", [q.stream], [group, start])
    assert result in (0, 1)
    return int(result)


async def read_new(client: Redis, q: QueueKeys, group: str, consumer: str = "c1") -> list[str]:
    return await read_ids(client, group, consumer, q.stream, 100)


@pytest.mark.parametrize("start", ["last", "first", "0", "1700000000000"])
async def test_new_stream_is_created(client: Redis, q: QueueKeys, start: str) -> None:
    assert await declare(client, q, "g", start) == 1
    assert await client.type(q.stream) == "stream"
    assert await client.xlen(q.stream) == 0
    info = await group_info(client, q.stream, "g")
    assert info["last-delivered-id"] == "0-0"
    assert info["entries-read"] == 0
    assert info["lag"] == 0
    assert info["pending"] == 0
    assert info["consumers"] == 0


async def test_new_stream_group_gets_everything_sent_later(client: Redis, q: QueueKeys) -> None:
    await declare(client, q, "g", "last")
    ids = await add_entries(client, q.stream, 3)
    assert (await group_info(client, q.stream, "g"))["lag"] == 3
    assert await read_new(client, q, "g") == ids
    info = await group_info(client, q.stream, "g")
    assert (info["entries-read"], info["lag"]) == (3, 0)


async def test_last_on_existing_stream(client: Redis, q: QueueKeys) -> None:
    ids = await add_entries(client, q.stream, 3)
    assert await declare(client, q, "g", "last") == 1
    info = await group_info(client, q.stream, "g")
    assert info["last-delivered-id"] == ids[-1]
    assert info["entries-read"] == 3
    assert info["lag"] == 0
    assert await read_new(client, q, "g") == []
    (new,) = await add_entries(client, q.stream, 1)
    assert (await group_info(client, q.stream, "g"))["lag"] == 1
    assert await read_new(client, q, "g") == [new]
    assert (await group_info(client, q.stream, "g"))["lag"] == 0


async def test_last_on_emptied_stream(client: Redis, q: QueueKeys) -> None:
    await add_entries(client, q.stream, 2)
    await client.xtrim(q.stream, maxlen=0, approximate=False)
    assert await client.xlen(q.stream) == 0
    assert await declare(client, q, "g", "last") == 1
    assert await declare(client, q, "f", "first") == 1
    for group in ("g", "f"):
        info = await group_info(client, q.stream, group)
        assert (info["entries-read"], info["lag"]) == (2, 0)
    (new,) = await add_entries(client, q.stream, 1)
    assert (await group_info(client, q.stream, "g"))["lag"] == 1
    assert await read_new(client, q, "g") == [new]


async def test_first_on_existing_stream(client: Redis, q: QueueKeys) -> None:
    ids = await add_entries(client, q.stream, 4)
    assert await declare(client, q, "g", "first") == 1
    info = await group_info(client, q.stream, "g")
    assert info["last-delivered-id"] == "0-0"
    assert info["entries-read"] == 0
    assert info["lag"] == 4
    assert await read_new(client, q, "g") == ids
    info = await group_info(client, q.stream, "g")
    assert (info["entries-read"], info["lag"]) == (4, 0)


async def test_first_after_trimming_reports_exact_lag(client: Redis, q: QueueKeys) -> None:
    ids = await add_entries(client, q.stream, 5)
    await client.xtrim(q.stream, maxlen=3, approximate=False)
    assert await declare(client, q, "g", "first") == 1
    info = await group_info(client, q.stream, "g")
    assert info["entries-read"] == 2
    assert info["lag"] == 3
    assert await read_new(client, q, "g") == ids[2:]
    info = await group_info(client, q.stream, "g")
    assert (info["entries-read"], info["lag"]) == (5, 0)


async def test_first_partial_read_lag(client: Redis, q: QueueKeys) -> None:
    await add_entries(client, q.stream, 5)
    await declare(client, q, "g", "first")
    await client.xreadgroup("g", "c1", {q.stream: ">"}, count=2)
    info = await group_info(client, q.stream, "g")
    assert (info["entries-read"], info["lag"]) == (2, 3)


async def test_epoch_ms_start(client: Redis, q: QueueKeys) -> None:
    for entry_id in ("1000-0", "2000-0", "2000-1", "3000-5"):
        await client.xadd(q.stream, {"n": entry_id}, id=entry_id)
    cases = {
        "0": ["1000-0", "2000-0", "2000-1", "3000-5"],
        "1000": ["1000-0", "2000-0", "2000-1", "3000-5"],
        "1001": ["2000-0", "2000-1", "3000-5"],
        "2000": ["2000-0", "2000-1", "3000-5"],
        "2001": ["3000-5"],
        "3000": ["3000-5"],
        "3001": [],
        "-5": ["1000-0", "2000-0", "2000-1", "3000-5"],
    }
    for n, (start, expected) in enumerate(cases.items()):
        group = f"g{n}"
        assert await declare(client, q, group, start) == 1
        assert await read_new(client, q, group) == expected, start


async def test_epoch_ms_start_then_new_entries(client: Redis, q: QueueKeys) -> None:
    await client.xadd(q.stream, {"n": "old"}, id="1000-0")
    assert await declare(client, q, "g", "5000") == 1
    await client.xadd(q.stream, {"n": "new"}, id="6000-0")
    assert await read_new(client, q, "g") == ["6000-0"]


async def test_idempotent(client: Redis, q: QueueKeys) -> None:
    ids = await add_entries(client, q.stream, 3)
    assert await declare(client, q, "g", "last") == 1
    before = await group_info(client, q.stream, "g")
    await add_entries(client, q.stream, 2)
    for start in ("last", "first", "0", "1"):
        assert await declare(client, q, "g", start) == 0
    after = await group_info(client, q.stream, "g")
    assert after["last-delivered-id"] == before["last-delivered-id"] == ids[-1]
    assert after["entries-read"] == before["entries-read"]
    assert after["lag"] == 2
    assert len(await client.xinfo_groups(q.stream)) == 1


async def test_idempotent_after_consuming(client: Redis, q: QueueKeys) -> None:
    await declare(client, q, "g", "first")
    ids = await add_entries(client, q.stream, 3)
    assert await read_new(client, q, "g") == ids
    assert await declare(client, q, "g", "first") == 0
    info = await group_info(client, q.stream, "g")
    assert info["last-delivered-id"] == ids[-1]
    assert info["pending"] == 3
    assert await read_new(client, q, "g") == []


async def test_groups_are_independent(client: Redis, q: QueueKeys) -> None:
    ids = await add_entries(client, q.stream, 2)
    assert await declare(client, q, "a", "first") == 1
    assert await declare(client, q, "b", "last") == 1
    assert await declare(client, q, "a", "last") == 0
    assert await read_new(client, q, "a") == ids
    assert await read_new(client, q, "b") == []
    names = sorted(row["name"] for row in await client.xinfo_groups(q.stream))
    assert names == ["a", "b"]


async def test_group_name_prefix_is_not_a_match(client: Redis, q: QueueKeys) -> None:
    await add_entries(client, q.stream, 1)
    assert await declare(client, q, "billing", "first") == 1
    assert await declare(client, q, "bill", "first") == 1
    assert await declare(client, q, "billing-2", "first") == 1


async def test_bad_start_on_existing_stream_is_a_script_error(client: Redis, q: QueueKeys) -> None:
    await add_entries(client, q.stream, 1)
    with pytest.raises(ScriptError, match="start"):
        await declare(client, q, "g", "yesterday")
    assert await client.xinfo_groups(q.stream) == []


async def test_bad_start_on_new_stream_is_rejected(client: Redis, q: QueueKeys) -> None:
    """The start argument is validated before anything is written, new stream or not."""
    with pytest.raises((ScriptError, ResponseError)):
        await declare(client, q, "g", "yesterday")
    assert not await client.exists(q.stream)


async def test_after_an_entry_id_delivers_what_came_later(client: Redis, q: QueueKeys) -> None:
    """A consumer re-creating a group that vanished (Redis restarted empty) starts after the last
    entry it saw, so what producers sent meanwhile is delivered."""
    ids = await add_entries(client, q.stream, 4)
    assert await declare(client, q, "g", f"after:{ids[1]}") == 1
    assert await read_new(client, q, "g") == ids[2:]


async def test_after_on_a_missing_stream_starts_at_the_beginning(
    client: Redis, q: QueueKeys
) -> None:
    assert await declare(client, q, "g", "after:1700000000000-5") == 1
    ids = await add_entries(client, q.stream, 2)
    assert await read_new(client, q, "g") == ids


@pytest.mark.parametrize("start", ["after:", "after:12", "after:x-1", "later"])
async def test_malformed_after_is_refused(client: Redis, q: QueueKeys, start: str) -> None:
    await add_entries(client, q.stream, 1)
    with pytest.raises(ScriptError, match="after:<entry id>"):
        await declare(client, q, "g", start)
    assert await client.xinfo_groups(q.stream) == []
