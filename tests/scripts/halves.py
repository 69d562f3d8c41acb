"""Helpers for the tests of the transaction scripts (prepare, commit, rollback, check_claim).

Each helper calls its script with the keys and arguments `rmq.transaction.store` uses.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rmq.keys import QueueKeys
from tests.scripts import call, unpacked

GROUP = "order-service"
TTL = 60_000
CHANNEL = "wake"


def half(
    msg_id: str,
    body: str = "body",
    *,
    kind: str = "",
    value: int = 0,
    tag: str = "",
    keys: str = "",
    props: str = "",
    flags: str = "0",
) -> list[Any]:
    """The 8 prepare values of one message: delay kind and value, then the 6 stored values."""
    return [kind, value, msg_id, tag, keys, props, flags, body]


def fields_of(msg_id: str, body: str = "body", **extra: str) -> list[str]:
    """The 12 stream fields prepare stores (and commit appends), in order."""
    values = {"t": "", "k": "", "p": "", "c": "0", **extra}
    return [
        "i", msg_id, "t", values["t"], "k", values["k"], "p", values["p"], "c", values["c"],
        "d", body,
    ]  # fmt: skip


def pairs(flat: list[str]) -> dict[str, str]:
    """A flat [field, value, ...] list as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def prepare(
    client: Redis, q: QueueKeys, *messages: list[Any], group: str = GROUP, immunity: int = 60_000
) -> list[Any]:
    keys = [q.half, q.half_group(group), q.half_payload, q.half_done]
    args: list[Any] = [group, immunity]
    for m in messages:
        args += m
    reply = await call(client, "prepare", keys, args)
    assert isinstance(reply, list)
    return reply


async def commit(
    client: Redis, q: QueueKeys, *msg_ids: str, group: str = GROUP, ttl: int = TTL
) -> list[Any]:
    keys = [
        q.stream, q.delay, q.delay_payload, q.half, q.half_group(group), q.half_payload,
        q.half_done, q.half_done_expiry,
    ]  # fmt: skip
    reply = await call(client, "commit", keys, [group, ttl, CHANNEL, *msg_ids])
    assert isinstance(reply, list)
    return reply


async def rollback(
    client: Redis, q: QueueKeys, *msg_ids: str, group: str = GROUP, ttl: int = TTL
) -> list[Any]:
    keys = [q.half, q.half_group(group), q.half_payload, q.half_done, q.half_done_expiry]
    reply = await call(client, "rollback", keys, [group, ttl, *msg_ids])
    assert isinstance(reply, list)
    return reply


async def check_claim(
    client: Redis,
    q: QueueKeys,
    *,
    group: str = GROUP,
    interval: int = 30_000,
    max_checks: int = 15,
    limit: int = 100,
    ttl: int = TTL,
) -> tuple[int, list[str], list[tuple[str, int, list[str]]]]:
    """(wait ms, discarded ids, [(msg_id, checks, fields)])."""
    keys = [
        q.half, q.half_group(group), q.half_payload, q.half_done, q.half_done_expiry,
        q.half_discarded(group),
    ]  # fmt: skip
    reply = await call(client, "check_claim", keys, [group, interval, max_checks, limit, ttl])
    assert isinstance(reply, list)
    rest = reply[2:]
    claimed = [(rest[i], int(rest[i + 1]), list(rest[i + 2])) for i in range(0, len(rest), 3)]
    return int(reply[0]), list(reply[1]), claimed


async def scores(client: Redis, key: str) -> dict[str, int]:
    rows: Any = await client.zrange(key, 0, -1, withscores=True)
    return {m: int(s) for m, s in rows}


async def half_state(client: Redis, q: QueueKeys, group: str = GROUP) -> dict[str, Any]:
    """Everything the scripts keep about half messages on `q`, for before/after comparisons."""
    return {
        "all": await scores(client, q.half),
        "mine": await scores(client, q.half_group(group)),
        "payload": {
            m: await unpacked(client, q.half_payload, str(m))
            for m in await client.hkeys(q.half_payload)
        },
        "done": await client.hgetall(q.half_done),
        "stream": await client.xrange(q.stream),
        "delay": await scores(client, q.delay),
    }
