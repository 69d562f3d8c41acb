"""Tag and SQL92 filters on push and pull consumers: exactly the matching messages arrive."""

from __future__ import annotations

import redis

import rmq
from rmq.keys import NamespaceKeys
from tests.helpers import running, wait_until


async def send_mix(app: rmq.App, topic: str) -> None:
    for n in range(30):
        await app.send(
            topic,
            n,
            tag=("TagA", "TagB", "TagC")[n % 3],
            properties={"region": "eu" if n % 2 else "us", "amount": str(n * 10)},
        )


async def test_push_consumers_get_exactly_the_matching_messages(
    app: rmq.App, r: redis.Redis, namespace: str
) -> None:
    got: dict[str, list[int]] = {"tags": [], "sql": [], "both": [], "all": []}

    @app.consumer("mix", group="tags", tag="TagA || TagB")
    async def tags(msg: rmq.Message) -> None:
        got["tags"].append(msg.body)

    @app.consumer("mix", group="sql", sql="region = 'eu' AND amount BETWEEN 50 AND 200")
    async def sql(msg: rmq.Message) -> None:
        got["sql"].append(msg.body)

    @app.consumer("mix", group="both", tag="TagC", sql="amount > 100")
    async def both(msg: rmq.Message) -> None:
        got["both"].append(msg.body)

    @app.consumer("mix", group="all", tag="*")
    async def everything(msg: rmq.Message) -> None:
        got["all"].append(msg.body)

    async with running(app):
        await send_mix(app, "mix")
        await wait_until(lambda: len(got["all"]) == 30)
        keys = NamespaceKeys(namespace)
        streams = [keys.queue("mix", q).stream for q in range(4)]
        await wait_until(
            lambda: all(r.xpending(s, g)["pending"] == 0 for s in streams for g in got)
        )
        stats = {c.group: c.stats for c in app.running_consumers}
    assert sorted(got["tags"]) == [n for n in range(30) if n % 3 != 2]
    assert sorted(got["sql"]) == [n for n in range(30) if n % 2 and 50 <= n * 10 <= 200]
    assert sorted(got["both"]) == [n for n in range(30) if n % 3 == 2 and n * 10 > 100]
    assert stats["tags"].filtered == 10
    assert stats["all"].filtered == 0


async def test_pull_consumer_filters(opened: rmq.App) -> None:
    async with opened.pull_consumer("pmix", "g", sql="TAGS = 'TagB' OR amount >= 250") as pc:
        await send_mix(opened, "pmix")
        got: list[int] = []
        while batch := await pc.receive(max_messages=8):
            got += [m.body for m in batch]
            await pc.ack(*batch)
        assert sorted(got) == [n for n in range(30) if n % 3 == 1 or n >= 25]
        assert pc.filtered == 30 - len(got)


def test_bad_filters_are_clear_errors(app: rmq.App) -> None:
    async def handler(msg: rmq.Message) -> None: ...

    try:
        app.consumer("t", group="g", sql="amount >")(handler)
    except rmq.FilterSyntaxError as exc:
        assert exc.column == 9
    else:
        raise AssertionError("expected FilterSyntaxError")
