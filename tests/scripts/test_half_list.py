"""half_list.lua: a queue's half messages by next check time, read-only, paged by a cursor."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import SCRIPTS, call, server_ms
from tests.scripts.halves import (
    GROUP,
    check_claim,
    commit,
    fields_of,
    half,
    half_state,
    prepare,
    scores,
)

Listed = tuple[str, int, str, int, int, str, str, list[str]]


async def half_list(
    client: Redis,
    q: QueueKeys,
    *,
    group: str = "",
    limit: int = 100,
    after: tuple[Any, str] = ("", ""),
) -> tuple[tuple[int, str] | None, list[Listed]]:
    """(cursor or None, [(msg_id, next ms, group, checks, prepared ms, kind, value, fields)])."""
    index = q.half_group(group) if group else q.half
    reply = await call(client, "half_list", [index, q.half_payload], [group, limit, *after])
    assert isinstance(reply, list)
    cursor = None if reply[0] is None else (int(reply[0]), reply[1])
    assert (reply[0] is None) == (reply[1] is None)
    rest = reply[2:]
    assert len(rest) % 8 == 0
    rows: list[Listed] = [
        (m, int(s), g, int(c), int(p), kind, value, list(fields))
        for m, s, g, c, p, kind, value, fields in (rest[i : i + 8] for i in range(0, len(rest), 8))
    ]
    return cursor, rows


async def pages(client: Redis, q: QueueKeys, limit: int, group: str = "") -> list[list[str]]:
    """Every page of `limit`, following the cursor until it ends."""
    out: list[list[str]] = []
    after: tuple[Any, str] = ("", "")
    while True:
        cursor, rows = await half_list(client, q, group=group, limit=limit, after=after)
        out.append([r[0] for r in rows])
        if cursor is None:
            return out
        after = cursor


async def test_an_empty_queue(client: Redis, q: QueueKeys) -> None:
    assert await half_list(client, q) == (None, [])


async def test_lists_everything_stored_in_next_check_order(client: Redis, q: QueueKeys) -> None:
    before = await server_ms(client)
    await prepare(client, q, half("B", "late", kind="after", value=5_000), immunity=9_000)
    await prepare(
        client, q, half("A", '{"a":1}', tag="paid", keys="k1 k2", props='{"r":"eu"}', flags="2"),
        immunity=1_000,
    )  # fmt: skip
    await prepare(client, q, half("C", "at", kind="at", value=4_102_444_800_000), immunity=5_000)
    after = await server_ms(client)
    state = await half_state(client, q)
    cursor, rows = await half_list(client, q)
    assert cursor is None
    assert [r[0] for r in rows] == ["A", "C", "B"]
    next_ms = await scores(client, q.half)
    by_id = {r[0]: r for r in rows}
    for msg_id, row in by_id.items():
        assert row[1] == next_ms[msg_id]
        assert (row[2], row[3]) == (GROUP, 0)
        assert before <= row[4] <= after
    assert by_id["A"][5:] == ("", "0", fields_of("A", '{"a":1}', t="paid", k="k1 k2",
                                                 p='{"r":"eu"}', c="2"))  # fmt: skip
    assert by_id["B"][5:] == ("after", "5000", fields_of("B", "late"))
    assert by_id["C"][5:] == ("at", "4102444800000", fields_of("C", "at"))
    assert await half_state(client, q) == state, "read-only"


async def test_shows_the_check_count_and_the_next_check(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), immunity=0)
    await check_claim(client, q, interval=20_000)
    (_, rows) = await half_list(client, q)
    assert [(r[0], r[3]) for r in rows] == [("A", 1)]
    assert rows[0][1] == (await scores(client, q.half))["A"]
    assert rows[0][1] - rows[0][4] >= 20_000


async def test_resolved_messages_are_gone(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), half("B"))
    await commit(client, q, "A")
    assert [r[0] for r in (await half_list(client, q))[1]] == ["B"]


async def test_one_group(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("M1"), half("M2"))
    await prepare(client, q, half("X1"), group="other")
    _, rows = await half_list(client, q, group=GROUP)
    assert [(r[0], r[2]) for r in rows] == [("M1", GROUP), ("M2", GROUP)]
    _, rows = await half_list(client, q, group="other")
    assert [(r[0], r[2]) for r in rows] == [("X1", "other")]
    assert len((await half_list(client, q))[1]) == 3
    # another group's member in a group's index is read, not listed
    await client.zadd(q.half_group(GROUP), {"X1": 0})
    cursor, rows = await half_list(client, q, group=GROUP, limit=1)
    assert (cursor, rows) == ((0, "X1"), [])
    cursor, rows = await half_list(client, q, group=GROUP, limit=5, after=(0, "X1"))
    assert (cursor, [r[0] for r in rows]) == (None, ["M1", "M2"])


async def test_pages_follow_the_cursor(client: Redis, q: QueueKeys) -> None:
    """Messages prepared together share their next check ms: the msg_id orders them."""
    await prepare(client, q, *[half(f"M{n:02}") for n in range(7)], immunity=1_000)
    await prepare(client, q, *[half(f"N{n:02}") for n in range(5)], immunity=2_000)
    everything = [f"M{n:02}" for n in range(7)] + [f"N{n:02}" for n in range(5)]
    assert await pages(client, q, 100) == [everything]
    # the cursor is exact: no empty page after the last one
    assert await pages(client, q, 3) == [everything[i : i + 3] for i in range(0, 12, 3)]
    assert await pages(client, q, 5) == [everything[:5], everything[5:10], everything[10:]]
    assert await pages(client, q, 1) == [[m] for m in everything]


async def test_a_cursor_whose_member_is_gone(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, *[half(f"M{n}") for n in range(4)], immunity=1_000)
    cursor, rows = await half_list(client, q, limit=2)
    assert cursor is not None and [r[0] for r in rows] == ["M0", "M1"]
    await commit(client, q, "M1")
    assert [r[0] for r in (await half_list(client, q, after=cursor))[1]] == ["M2", "M3"]
    # a cursor ms with no msg_id: everything at that ms and later
    assert [r[0] for r in (await half_list(client, q, after=(cursor[0], "")))[1]] == [
        "M0", "M2", "M3",
    ]  # fmt: skip
    assert (await half_list(client, q, after=(cursor[0] + 1, "")))[1] == []


async def test_byte_order_of_msg_ids(client: Redis, q: QueueKeys) -> None:
    """Members of one score come in byte order (as the sorted set keeps them), whatever the
    server's locale."""
    ids = ["a", "B", "_", "0", "ab", "Z", "\u00e9"]
    await prepare(client, q, *[half(m) for m in ids], immunity=1_000)
    expected = sorted(ids, key=lambda m: m.encode())
    assert [m for page in await pages(client, q, 2) for m in page] == expected


async def test_a_member_without_payload_is_skipped(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), immunity=1_000)
    await client.zadd(q.half, {"GHOST": 1})
    cursor, rows = await half_list(client, q)
    assert cursor is None and [r[0] for r in rows] == ["A"]
    assert await client.zscore(q.half, "GHOST") == 1, "nothing is removed"


@pytest.mark.parametrize(
    "args",
    [
        [GROUP, 0, "", ""],
        [GROUP, 1001, "", ""],
        [GROUP, "x", "", ""],
        [GROUP, 10, "soon", ""],
    ],
)
async def test_bad_arguments_are_refused(client: Redis, q: QueueKeys, args: list[object]) -> None:
    with pytest.raises(ScriptError, match="rmq: half_list takes"):
        await SCRIPTS.call(client, "half_list", [q.half, q.half_payload], args)
