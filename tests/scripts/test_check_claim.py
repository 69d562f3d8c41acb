"""check_claim.lua: due half messages of one group are claimed by one checker per interval;
past the maximum number of checks they are rolled back and recorded for audit."""

from __future__ import annotations

import asyncio
from collections import Counter

import anyio
import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import SCRIPTS, connect, entries, server_ms, unpacked
from tests.scripts.halves import (
    GROUP,
    check_claim,
    commit,
    fields_of,
    half,
    pairs,
    prepare,
    rollback,
    scores,
)


async def test_nothing_is_claimed_before_the_immunity_time(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), immunity=5_000)
    wait, discarded, claimed = await check_claim(client, q)
    assert (discarded, claimed) == ([], [])
    assert 4_000 < wait <= 5_000


async def test_claims_a_due_message_for_one_interval(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A", "body", tag="t1"), immunity=0)
    before = await server_ms(client)
    wait, discarded, claimed = await check_claim(client, q, interval=10_000)
    after = await server_ms(client)
    assert discarded == []
    assert claimed == [("A", 1, fields_of("A", t="t1"))]
    assert 9_000 < wait <= 10_000
    for key in (q.half, q.half_group(GROUP)):
        assert before + 10_000 <= (await scores(client, key))["A"] <= after + 10_000
    stored = await unpacked(client, q.half_payload, "A")
    assert stored is not None and stored[1] == 1
    # claimed: a second checker gets nothing until the interval is over
    assert (await check_claim(client, q, interval=10_000))[2] == []


async def test_the_check_count_grows_with_each_claim(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), immunity=0)
    counts = []
    for _ in range(3):
        counts += [checks for _, checks, _ in (await check_claim(client, q, interval=1))[2]]
        await anyio.sleep(0.005)
    assert counts == [1, 2, 3]


async def test_concurrent_checkers_claim_each_message_once(redis_url: str, q: QueueKeys) -> None:
    async with connect(redis_url) as setup:
        await SCRIPTS.load_all(setup)
        for n in range(0, 200, 50):
            await prepare(setup, q, *[half(f"M{n + i}") for i in range(50)], immunity=0)

    async def checker() -> list[str]:
        got: list[str] = []
        async with connect(redis_url) as c:
            for _ in range(20):
                got += [m for m, _, _ in (await check_claim(c, q, limit=7))[2]]
        return got

    results = await asyncio.gather(*[checker() for _ in range(4)])
    claims = Counter(m for got in results for m in got)
    assert set(claims) == {f"M{n}" for n in range(200)}
    assert set(claims.values()) == {1}


async def test_only_the_groups_own_messages(client: Redis, q: QueueKeys) -> None:
    """Another group's due messages (its checkers are all gone) never block this group's."""
    await prepare(client, q, *[half(f"X{n}") for n in range(20)], group="other", immunity=0)
    await prepare(client, q, half("MINE"), immunity=0)
    wait, _, claimed = await check_claim(client, q, limit=1)
    assert [m for m, _, _ in claimed] == ["MINE"]
    wait, _, claimed = await check_claim(client, q, limit=1)
    assert claimed == [] and wait > 0
    assert set(await scores(client, q.half_group("other"))) == {f"X{n}" for n in range(20)}
    other = await unpacked(client, q.half_payload, "X0")
    assert other is not None and other[1] == 0


async def test_limit_and_wait(client: Redis, q: QueueKeys) -> None:
    assert (await check_claim(client, q)) == (-1, [], [])
    await prepare(client, q, *[half(f"M{n}") for n in range(5)], immunity=0)
    wait, _, claimed = await check_claim(client, q, limit=3)
    assert (wait, len(claimed)) == (0, 3)  # more are due now
    wait, _, claimed = await check_claim(client, q, limit=3, interval=2_000)
    assert len(claimed) == 2 and 0 < wait <= 2_000


async def test_resolved_messages_are_not_claimed(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("C"), half("R"), half("H"), immunity=0)
    await commit(client, q, "C")
    await rollback(client, q, "R")
    assert [m for m, _, _ in (await check_claim(client, q))[2]] == ["H"]


async def test_max_checks_discards_and_records(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A", "body", keys="order-1"), immunity=0)
    prepared = await unpacked(client, q.half_payload, "A")
    assert prepared is not None
    for n in (1, 2):
        assert [c for _, c, _ in (await check_claim(client, q, interval=1, max_checks=2))[2]] == [n]
        await anyio.sleep(0.005)
    wait, discarded, claimed = await check_claim(client, q, interval=1, max_checks=2)
    assert (wait, discarded, claimed) == (-1, ["A"], [])
    assert not await client.exists(q.half, q.half_group(GROUP), q.half_payload, q.stream)
    assert await client.hget(q.half_done, "A") == "r"
    ((_, record),) = await entries(client, q.half_discarded(GROUP))
    assert record == {
        **pairs(fields_of("A", k="order-1")),
        "group": GROUP,
        "checks": "2",
        "prepared_ms": str(prepared[2]),
        "reason": "max_checks",
    }
    assert await commit(client, q, "A") == ["rolled_back", "A"]


async def test_a_member_without_payload_is_dropped(client: Redis, q: QueueKeys) -> None:
    await client.zadd(q.half, {"GHOST": 1})
    await client.zadd(q.half_group(GROUP), {"GHOST": 1})
    assert await check_claim(client, q) == (-1, [], [])
    assert not await client.exists(q.half, q.half_group(GROUP))


async def test_forgets_expired_outcomes(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"))
    await rollback(client, q, "A", ttl=1)
    await anyio.sleep(0.01)
    await check_claim(client, q)
    assert not await client.exists(q.half_done, q.half_done_expiry)


@pytest.mark.parametrize(
    "args",
    [
        ["", 1000, 15, 10, 1000],
        [GROUP, 0, 15, 10, 1000],
        [GROUP, 1000, 0, 10, 1000],
        [GROUP, 1000, 15, 0, 1000],
        [GROUP, 1000, 15, 10, 0],
        [GROUP, "x", 15, 10, 1000],
    ],
)
async def test_bad_arguments_are_refused(client: Redis, q: QueueKeys, args: list[object]) -> None:
    keys = [
        q.half, q.half_group(GROUP), q.half_payload, q.half_done, q.half_done_expiry,
        q.half_discarded(GROUP),
    ]  # fmt: skip
    await prepare(client, q, half("A"), immunity=0)
    with pytest.raises(ScriptError, match="rmq: check_claim takes"):
        await SCRIPTS.call(client, "check_claim", keys, args)
    stored = await unpacked(client, q.half_payload, "A")
    assert stored is not None and stored[1] == 0
