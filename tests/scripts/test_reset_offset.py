"""reset_offset.lua: XGROUP SETID to first / last / a time, with an exact lag where possible."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import call, group_info, pending, read_ids

GROUP = "g"


async def reset(client: Redis, q: QueueKeys, target: str | int, limit: int = 100) -> Any:
    return await call(client, "reset_offset", [q.stream], [GROUP, target, limit])


async def fill(client: Redis, q: QueueKeys, times: list[int]) -> list[str]:
    """Entries with explicit ids <ms>-0, and the group at the end of them."""
    ids = [str(await client.xadd(q.stream, {"n": str(ms)}, id=f"{ms}-0")) for ms in times]
    await client.xgroup_create(q.stream, GROUP, "$")
    return ids


async def test_first_and_last(client: Redis, q: QueueKeys) -> None:
    ids = await fill(client, q, [1000, 2000, 3000])
    assert await reset(client, q, "first") == ["0-0", 0]
    info = await group_info(client, q.stream, GROUP)
    assert (info["last-delivered-id"], info["lag"]) == ("0-0", 3)
    assert await read_ids(client, GROUP, "c", q.stream, 10) == ids
    assert await reset(client, q, "last") == [ids[-1], 3]
    assert (await group_info(client, q.stream, GROUP))["lag"] == 0


async def test_time_is_exact(client: Redis, q: QueueKeys) -> None:
    ids = await fill(client, q, [1000, 2000, 2000 + 1, 3000])
    position, read = await reset(client, q, 2000)
    assert position == "1999-18446744073709551615"
    assert read == 1
    info = await group_info(client, q.stream, GROUP)
    assert info["lag"] == 3
    assert await read_ids(client, GROUP, "c", q.stream, 10) == ids[1:]
    assert (await group_info(client, q.stream, GROUP))["lag"] == 0


async def test_time_before_first_and_in_the_future(client: Redis, q: QueueKeys) -> None:
    ids = await fill(client, q, [1000, 2000])
    assert (await reset(client, q, 5))[1] == 0
    assert (await group_info(client, q.stream, GROUP))["lag"] == 2
    # the future means "last": what is sent later must not be skipped
    assert await reset(client, q, 10**13) == [ids[-1], 2]
    later = str(await client.xadd(q.stream, {"n": "later"}, id="2500-0"))
    assert await read_ids(client, GROUP, "c", q.stream, 10) == [later]


async def test_too_many_to_count_leaves_the_lag_to_redis(client: Redis, q: QueueKeys) -> None:
    await fill(client, q, [1000, 2000, 3000, 4000])
    position, read = await reset(client, q, 2000, limit=2)
    assert (position, read) == ("1999-18446744073709551615", -1)
    assert (await read_ids(client, GROUP, "c", q.stream, 10))[0] == "2000-0"


async def test_pending_entries_stay_pending(client: Redis, q: QueueKeys) -> None:
    ids = await fill(client, q, [1000, 2000])
    await reset(client, q, "first")
    await read_ids(client, GROUP, "c", q.stream, 1)
    await reset(client, q, "last")
    assert set(await pending(client, q.stream, GROUP)) == {ids[0]}
    assert (await group_info(client, q.stream, GROUP))["pending"] == 1


async def test_empty_stream(client: Redis, q: QueueKeys) -> None:
    await client.xgroup_create(q.stream, GROUP, "$", mkstream=True)
    assert await reset(client, q, "first") == ["0-0", 0]
    assert await reset(client, q, 1234) == ["0-0", 0]


async def test_other_groups_are_untouched(client: Redis, q: QueueKeys) -> None:
    ids = await fill(client, q, [1000, 2000])
    await client.xgroup_create(q.stream, "other", "$")
    await reset(client, q, "first")
    assert (await group_info(client, q.stream, "other"))["last-delivered-id"] == ids[-1]


@pytest.mark.parametrize(
    ("setup", "args", "error"),
    [
        (False, [GROUP, "first", 10], "no such queue stream"),
        (True, ["missing", "first", 10], "no such consumer group"),
        (True, [GROUP, "soon", 10], "first|last"),
    ],
)
async def test_errors(
    client: Redis, q: QueueKeys, setup: bool, args: list[Any], error: str
) -> None:
    if setup:
        await fill(client, q, [1000])
    with pytest.raises(ScriptError, match=error):
        await call(client, "reset_offset", [q.stream], args)
