"""commit.lua: half messages of one queue become visible together (or wait out their delay from
the commit on), exactly once; nothing changes when any of them cannot be committed."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import SCRIPTS, connect, entries, server_ms, unpacked
from tests.scripts.halves import (
    CHANNEL,
    GROUP,
    commit,
    fields_of,
    half,
    half_state,
    pairs,
    prepare,
    rollback,
    scores,
)


async def test_appends_and_forgets_the_half(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("M1", "body", tag="paid", keys="k1"))
    before = await server_ms(client)
    reply = await commit(client, q, "M1", ttl=10_000)
    after = await server_ms(client)
    assert reply[0] == "ok" and reply[2] == 0
    ((entry_id, fields),) = await entries(client, q.stream)
    assert reply[1] == entry_id
    assert fields == pairs(fields_of("M1", t="paid", k="k1"))
    assert list(fields) == fields_of("M1")[::2], "in the stored order"
    assert not await client.exists(q.half, q.half_group(GROUP), q.half_payload)
    assert await client.hgetall(q.half_done) == {"M1": f"c {entry_id} 0"}
    forget_at = (await scores(client, q.half_done_expiry))["M1"]
    assert before + 10_000 <= forget_at <= after + 10_000


async def test_several_messages_commit_in_order(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), half("B"), half("C"))
    reply = await commit(client, q, "C", "A", "B")
    ids = [entry_id for entry_id, _ in await entries(client, q.stream)]
    assert reply == ["ok", ids[0], 0, ids[1], 0, ids[2], 0]
    assert [f["i"] for _, f in await entries(client, q.stream)] == ["C", "A", "B"]


async def test_a_repeated_commit_answers_without_appending(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), half("B"))
    first = await commit(client, q, "A")
    state = await half_state(client, q)
    assert await commit(client, q, "A") == first
    assert await half_state(client, q) == state
    # one already committed, one not: the commit completes the rest
    second = await commit(client, q, "A", "B")
    assert second[:3] == first
    assert len(await entries(client, q.stream)) == 2


async def test_an_id_named_twice_in_one_call_is_appended_once(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), half("B"))
    await commit(client, q, "B")
    reply = await commit(client, q, "A", "B", "A", "B")  # merged commits of racing callers
    ids = [entry_id for entry_id, _ in await entries(client, q.stream)]
    assert [f["i"] for _, f in await entries(client, q.stream)] == ["B", "A"]
    assert reply == ["ok", ids[1], 0, ids[0], 0, ids[1], 0, ids[0], 0]
    assert not await client.exists(q.half_payload)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [("rollback", ["rolled_back", "X"]), ("nothing", ["not_found", "X"])],
)
async def test_all_or_nothing(client: Redis, q: QueueKeys, setup: str, expected: list[str]) -> None:
    """One message that cannot be committed stops the whole call: the others stay half."""
    await prepare(client, q, half("A"), half("B"))
    if setup == "rollback":
        await prepare(client, q, half("X"))
        await rollback(client, q, "X")
    state = await half_state(client, q)
    assert await commit(client, q, "A", "X", "B") == expected
    assert await half_state(client, q) == state
    assert not await client.exists(q.stream)


async def test_another_groups_message_is_refused(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), group="g1")
    state = await half_state(client, q, "g1")
    assert await commit(client, q, "A", group="g2") == ["wrong_group", "A", "g1"]
    assert await half_state(client, q, "g1") == state


async def test_delay_starts_at_commit(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("D", kind="after", value=60_000))
    await anyio.sleep(0.3)  # the message waits as a half message: its delay has not started
    before = await server_ms(client)
    reply = await commit(client, q, "D")
    after = await server_ms(client)
    assert reply[:2] == ["ok", None]
    due = reply[2]
    assert before + 60_000 <= due <= after + 60_000 + 1
    assert await scores(client, q.delay) == {"D": due}
    assert await unpacked(client, q.delay_payload, "D") == fields_of("D")
    assert not await client.exists(q.stream, q.half_payload)
    assert await client.hget(q.half_done, "D") == f"c  {due}"
    assert await commit(client, q, "D") == ["ok", None, due]


async def test_a_due_time_already_past_appends_at_once(client: Redis, q: QueueKeys) -> None:
    past = await server_ms(client) - 1_000
    await prepare(client, q, half("P", kind="at", value=past))
    reply = await commit(client, q, "P")
    ((entry_id, _),) = await entries(client, q.stream)
    assert reply == ["ok", entry_id, past]
    assert not await client.exists(q.delay)


async def test_wakes_promoters_when_due_sooner(redis_url: str, client: Redis, q: QueueKeys) -> None:
    far = await server_ms(client) + 3_600_000
    await prepare(client, q, half("N", kind="after", value=60_000), half("F", kind="at", value=far))
    async with connect(redis_url) as sub:
        pubsub = sub.pubsub()
        await pubsub.subscribe(CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await commit(client, q, "F")  # first in the schedule: wakes
        await commit(client, q, "N")  # sooner than F: wakes
        await client.publish(CHANNEL, "end")
        got = []
        with anyio.fail_after(5):
            while (m := await pubsub.get_message(timeout=1)) is None or m["data"] != "end":
                if m is not None:
                    got.append(m["data"])
        await pubsub.aclose()
    assert got == [q.delay, q.delay]  # the schedule that is due sooner


async def test_outcomes_are_forgotten_after_their_ttl(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("OLD"), half("NEW"))
    await commit(client, q, "OLD", ttl=1)
    await anyio.sleep(0.01)
    await commit(client, q, "NEW")  # trims what expired
    assert await client.hkeys(q.half_done) == ["NEW"]
    assert list(await scores(client, q.half_done_expiry)) == ["NEW"]
    assert await commit(client, q, "OLD") == ["not_found", "OLD"]


@pytest.mark.parametrize(
    "args",
    [["", 1000, CHANNEL, "A"], [GROUP, 0, CHANNEL, "A"], [GROUP, "x", CHANNEL, "A"], [GROUP, 1]],
)
async def test_bad_arguments_are_refused(client: Redis, q: QueueKeys, args: list[object]) -> None:
    keys = [
        q.stream, q.delay, q.delay_payload, q.half, q.half_group(GROUP), q.half_payload,
        q.half_done, q.half_done_expiry,
    ]  # fmt: skip
    await prepare(client, q, half("A"))
    with pytest.raises(ScriptError, match="rmq: commit takes"):
        await SCRIPTS.call(client, "commit", keys, args)
    assert not await client.exists(q.stream)


async def test_a_transaction_of_thousands_commits_in_one_call(client: Redis, q: QueueKeys) -> None:
    """Variadic calls go in parts: 5,000 messages (10,000 values per key) commit at once."""
    ids = [f"M{i}" for i in range(5000)]
    assert await prepare(client, q, *(half(m) for m in ids)) == [1] * 5000
    again = await prepare(client, q, half("M0"), half("M4999"), half("N"), half("N"))
    assert again == [0, 0, 1, 0], "prepared before, or earlier in the same call"
    reply = await commit(client, q, *ids, "N")
    assert reply[0] == "ok" and len(reply) == 1 + 2 * 5001
    stored = await entries(client, q.stream)
    assert [f["i"] for _, f in stored] == [*ids, "N"]
    assert reply[1::2] == [entry_id for entry_id, _ in stored]
    assert not await client.exists(q.half, q.half_group(GROUP), q.half_payload)
    assert await client.hlen(q.half_done) == 5001 == await client.zcard(q.half_done_expiry)
