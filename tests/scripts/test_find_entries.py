"""find_entries.lua: a bounded slice of a stream, matches by msg_id or by one of the keys."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import call


async def add(client: Redis, q: QueueKeys, msg_id: str, keys: str = "") -> str:
    fields = {"i": msg_id, "t": "", "k": keys, "p": "", "c": "1", "d": "x"}
    return str(await client.xadd(q.stream, fields))  # type: ignore[arg-type]


async def find(client: Redis, q: QueueKeys, start: str, limit: int, kind: str, value: str) -> Any:
    return await call(client, "find_entries", [q.stream], [start, "+", limit, kind, value])


async def test_matches_keys_as_whole_words(client: Redis, q: QueueKeys) -> None:
    a = await add(client, q, "A", "order-1 user-7")
    await add(client, q, "B", "order-10")
    c = await add(client, q, "C", "user-7")
    await add(client, q, "D")
    reply = await find(client, q, "-", 100, "k", "user-7")
    assert reply[0] == ""  # fewer than the limit were read: the range is exhausted
    assert reply[1::2] == [a, c]
    assert reply[2][:2] == ["i", "A"]
    assert (await find(client, q, "-", 100, "k", "order-1"))[1::2] == [a]  # not order-10


async def test_matches_msg_id_exactly(client: Redis, q: QueueKeys) -> None:
    await add(client, q, "AB")
    b = await add(client, q, "A")
    assert (await find(client, q, "-", 10, "i", "A"))[1::2] == [b]
    assert (await find(client, q, "-", 10, "i", "Z")) == [""]


async def test_slices_and_cursor(client: Redis, q: QueueKeys) -> None:
    ids = [await add(client, q, f"M{n}", "k") for n in range(5)]
    first = await find(client, q, "-", 2, "k", "k")
    assert first[0] == f"({ids[1]}"
    assert first[1::2] == ids[:2]
    second = await find(client, q, first[0], 2, "k", "k")
    assert second[1::2] == ids[2:4]
    third = await find(client, q, second[0], 2, "k", "k")
    assert third == ["", ids[4], third[2]]


async def test_end_bound_and_missing_stream(client: Redis, q: QueueKeys) -> None:
    ids = [await add(client, q, f"M{n}", "k") for n in range(3)]
    reply = await call(client, "find_entries", [q.stream], ["-", ids[1], 10, "k", "k"])
    assert reply[1::2] == ids[:2]
    assert await call(client, "find_entries", ["nope"], ["-", "+", 10, "k", "k"]) == [""]


async def test_foreign_entries_without_the_field(client: Redis, q: QueueKeys) -> None:
    await client.xadd(q.stream, {"d": "raw"})
    assert await find(client, q, "-", 10, "k", "k") == [""]


@pytest.mark.parametrize("args", [["-", "+", 0, "k", "x"], ["-", "+", 10, "x", "y"]])
async def test_bad_arguments(client: Redis, q: QueueKeys, args: list[Any]) -> None:
    with pytest.raises(ScriptError, match="find_entries"):
        await call(client, "find_entries", [q.stream], args)
