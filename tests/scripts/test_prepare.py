"""prepare.lua: half messages are stored invisibly, once per msg_id, and never after resolution."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from rmq.errors import ScriptError
from rmq.keys import QueueKeys
from tests.scripts import SCRIPTS, server_ms, unpacked
from tests.scripts.halves import (
    GROUP,
    commit,
    fields_of,
    half,
    half_state,
    prepare,
    rollback,
    scores,
)


async def test_stores_payload_and_first_check_time(client: Redis, q: QueueKeys) -> None:
    before = await server_ms(client)
    message = half("M1", '{"a":1}', tag="paid", keys="k1 k2", props='{"r":"eu"}', flags="2")
    assert await prepare(client, q, message, immunity=6_000) == [1]
    after = await server_ms(client)
    (score,) = (await scores(client, q.half)).values()
    assert before + 6_000 <= score <= after + 6_000
    assert (
        await scores(client, q.half) == await scores(client, q.half_group(GROUP)) == {"M1": score}
    )
    stored = await unpacked(client, q.half_payload, "M1")
    assert stored is not None
    group, checks, prepared_ms, kind, value, *fields = stored
    assert (group, checks, kind, value) == (GROUP, 0, "", "0")
    assert prepared_ms == score - 6_000
    assert fields == fields_of("M1", '{"a":1}', t="paid", k="k1 k2", p='{"r":"eu"}', c="2")


async def test_consumers_see_nothing(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("M1"), half("M2"))
    assert not await client.exists(q.stream)
    assert not await client.exists(q.delay)


async def test_a_retry_stores_nothing_twice(client: Redis, q: QueueKeys) -> None:
    assert await prepare(client, q, half("M1", "first")) == [1]
    state = await half_state(client, q)
    assert await prepare(client, q, half("M1", "second"), half("M2")) == [0, 1]
    again = await half_state(client, q)
    assert again["payload"]["M1"] == state["payload"]["M1"]
    assert again["all"]["M1"] == state["all"]["M1"]
    assert set(again["all"]) == {"M1", "M2"}


async def test_several_messages_in_one_call(client: Redis, q: QueueKeys) -> None:
    assert await prepare(client, q, half("A"), half("B"), half("C")) == [1, 1, 1]
    assert set(await scores(client, q.half_group(GROUP))) == {"A", "B", "C"}
    assert sorted(await client.hkeys(q.half_payload)) == ["A", "B", "C"]


async def test_delay_is_kept_for_the_commit(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A", kind="after", value=5_000), half("B", kind="at", value=7))
    a, b = [await unpacked(client, q.half_payload, m) for m in ("A", "B")]
    assert a is not None and a[3:5] == ["after", "5000"]
    assert b is not None and b[3:5] == ["at", "7"]


async def test_resolved_messages_are_never_prepared_again(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("C"), half("R"))
    assert (await commit(client, q, "C"))[0] == "ok"
    assert (await rollback(client, q, "R"))[0] == "ok"
    state = await half_state(client, q)
    assert await prepare(client, q, half("C"), half("R"), half("N")) == [
        "committed",
        "rolled_back",
        1,
    ]
    after = await half_state(client, q)
    assert after["stream"] == state["stream"]
    assert set(after["payload"]) == {"N"}


async def test_groups_share_the_queue_index_not_their_own(client: Redis, q: QueueKeys) -> None:
    await prepare(client, q, half("A"), group="g1")
    await prepare(client, q, half("B"), group="g2")
    assert set(await scores(client, q.half)) == {"A", "B"}
    assert set(await scores(client, q.half_group("g1"))) == {"A"}
    assert set(await scores(client, q.half_group("g2"))) == {"B"}


@pytest.mark.parametrize(
    ("group", "immunity", "values"),
    [
        ("", 0, half("A")),
        ("g", "soon", half("A")),
        ("g", -1, half("A")),
        ("g", 0, half("A")[:-1]),
        ("g", 0, []),
        ("g", 0, half("A", kind="later", value=1)),
        ("g", 0, ["after", "x", *half("A")[2:]]),
    ],
)
async def test_bad_arguments_are_refused(
    client: Redis, q: QueueKeys, group: str, immunity: object, values: list[object]
) -> None:
    keys = [q.half, q.half_group(group or "g"), q.half_payload, q.half_done]
    with pytest.raises(ScriptError, match="rmq: "):
        await SCRIPTS.call(client, "prepare", keys, [group, immunity, *values])
    assert not await client.exists(q.half, q.half_payload)
