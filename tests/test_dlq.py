"""Dead-letter queue operations: list, count, find, replay, purge, against a real Redis."""

from __future__ import annotations

import time

import anyio
import pytest
import redis

import rmq
from rmq import metrics
from rmq.keys import NamespaceKeys
from rmq.retention import Trimmer
from tests.helpers import running, wait_until


async def fill_dlq(app: rmq.App, topic: str, count: int) -> list[rmq.SendResult]:
    """Send `count` messages that a rejecting group dead-letters at once."""

    @app.consumer(topic, group="g")
    async def reject(msg: rmq.Message) -> None:
        raise rmq.Reject(f"bad {msg.body}")

    async with running(app):
        sent = await app.send_batch(topic, list(range(count)))
        dlq = app.dead_letters(topic, "g")
        await wait_until_count(dlq, count)
    return sent


async def wait_until_count(dlq: rmq.DeadLetters, count: int) -> None:
    for _ in range(500):
        if await dlq.count() == count:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"the DLQ never held {count}")


async def test_count_entries_get_find(app: rmq.App) -> None:
    sent = await fill_dlq(app, "dl", 5)
    async with app:
        dlq = app.dead_letters("dl", "g")
        assert await dlq.count() == 5
        assert sum((await dlq.counts()).values()) == 5
        letters = await dlq.entries()
        assert [x.message.body for x in letters if x.message] == [0, 1, 2, 3, 4]
        first = letters[0]
        assert (first.reason, first.error) == ("rejected", "bad 0")
        assert first.msg_id == sent[0].msg_id
        assert first.offset == sent[0].offset
        assert first.attempts == 1 and not first.lost
        assert first.first_failure_at is not None and first.last_failure_at is not None
        again = await dlq.get(first.queue_id, first.id)
        assert again is not None and again.msg_id == first.msg_id
        assert [x.msg_id for x in await dlq.find(sent[3].msg_id)] == [sent[3].msg_id]
        page = await dlq.entries(2)
        rest = await dlq.entries(10, queue_id=page[-1].queue_id, after=page[-1].id)
        assert [x.msg_id for x in page + rest] == [x.msg_id for x in letters]


async def test_replay_to_the_group_only(settings: rmq.Settings) -> None:
    app = rmq.App(settings)
    await fill_dlq(app, "rg", 3)
    fixed = rmq.App(settings)
    other = rmq.App(settings)
    got: list[tuple[int, int]] = []
    others: list[int] = []

    @fixed.consumer("rg", group="g")
    async def now_works(msg: rmq.Message) -> None:
        got.append((msg.body, msg.reconsume_times))

    @other.consumer("rg", group="other", start="first")
    async def bystander(msg: rmq.Message) -> None:
        others.append(msg.body)

    async with running(fixed), running(other):
        await wait_until(lambda: sorted(others) == [0, 1, 2])
        dlq = fixed.dead_letters("rg", "g")
        assert [x.msg_id for x in await dlq.replay(dry_run=True)] == [
            x.msg_id for x in await dlq.entries()
        ]
        assert await dlq.count() == 3
        replayed = await dlq.replay()
        assert len(replayed) == 3
        await wait_until(lambda: len(got) == 3)
        assert await dlq.count() == 0
        assert await dlq.replay(replayed) == [], (
            "a replayed letter is gone: replaying twice does nothing"
        )
        await anyio.sleep(0.3)
    assert sorted(got) == [(0, 0), (1, 0), (2, 0)]
    assert sorted(others) == [0, 1, 2], "the other group did not see the replay"


async def test_replay_to_the_topic(settings: rmq.Settings) -> None:
    app = rmq.App(settings)
    await fill_dlq(app, "rt", 2)
    reader = rmq.App(settings)
    async with reader:
        async with reader.pull_consumer("rt", "late-group") as pc:
            replayed = await reader.dead_letters("rt", "g").replay(to="topic")
            msgs = await pc.receive(wait=2)
    assert len(replayed) == 2
    assert sorted(m.body for m in msgs) == [0, 1]
    assert {m.msg_id for m in msgs} == {x.msg_id for x in replayed}


async def test_purge(app: rmq.App) -> None:
    await fill_dlq(app, "pg", 4)
    async with app:
        dlq = app.dead_letters("pg", "g")
        letters = await dlq.entries()
        assert await dlq.purge(letters[:1]) == 1
        assert await dlq.count() == 3
        assert await dlq.purge() == 3
        assert await dlq.count() == 0
        assert await dlq.entries() == []


async def test_purge_older_than(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    await fill_dlq(app, "old", 4)
    await anyio.sleep(0.3)
    fresh = NamespaceKeys(namespace).queue("old", 0).dlq("g")
    r.xadd(fresh, {"reason": "rejected: by hand"})  # dead-lettered just now
    async with app:
        dlq = app.dead_letters("old", "g")
        assert await dlq.purge_older_than(3600) == 0
        assert await dlq.purge_older_than(0.2, dry_run=True) == 4
        assert await dlq.count() == 5
        assert await dlq.purge_older_than(0.2) == 4
        assert [x.reason for x in await dlq.entries()] == ["rejected: by hand"]
        with pytest.raises(rmq.ConfigError):
            await dlq.purge_older_than(-1)


async def test_trimmer_applies_dlq_retention(settings: rmq.Settings) -> None:
    app = rmq.App(settings.replace(dlq_retention=0.1))
    topic = f"dlq-ret-{time.time_ns()}"  # metrics are per process: a fresh label
    await fill_dlq(app, topic, 3)
    await anyio.sleep(0.2)
    async with app:
        trimmer = Trimmer(app.context, topic)
        await trimmer.trim_once()
        assert trimmer.dead_letters_removed == 3
        assert await app.dead_letters(topic, "g").count() == 0
        assert metrics.TRIMMED.labels(topic, "dead_letter")._value.get() == 3
        await trimmer.trim_once()  # nothing left: nothing counted twice
        assert metrics.TRIMMED.labels(topic, "dead_letter")._value.get() == 3


async def test_topic_dlq_retention_overrides_the_setting(settings: rmq.Settings) -> None:
    app = rmq.App(settings.replace(dlq_retention=0.1))
    await fill_dlq(app, "keep", 2)
    await fill_dlq(app, "drop", 2)
    await anyio.sleep(0.2)
    async with app:
        await app.admin.update_topic("keep", dlq_retention=0.0)  # off for this topic
        other = rmq.App(settings)  # the setting off, the topic on
        async with other:
            await other.admin.update_topic("drop", dlq_retention=0.1)
            for topic in ("keep", "drop"):
                await Trimmer(other.context, topic).trim_once()
                await Trimmer(app.context, topic).trim_once()
        assert await app.dead_letters("keep", "g").count() == 2
        assert await app.dead_letters("drop", "g").count() == 0


async def test_undecodable_and_lost_letters(app: rmq.App, r: redis.Redis, namespace: str) -> None:
    seen: list[object] = []

    @app.consumer("raw", group="g", start="first")
    async def handle(msg: rmq.Message) -> None:
        seen.append(msg.body)

    async with app:
        await app.context.topics.create("raw", 1)
    queue = NamespaceKeys(namespace).queue("raw", 0)
    r.xadd(queue.stream, {"junk": "1"})
    async with running(app):
        dlq = app.dead_letters("raw", "g")
        await wait_until_count(dlq, 1)
        (letter,) = await dlq.entries()
        assert letter.reason == "undecodable"
        assert letter.message is None
        assert letter.fields == {b"junk": b"1"}
        # replaying it brings the junk back; it is set aside again, never crashing the worker
        assert len(await dlq.replay([letter], to="topic")) == 1
        await wait_until_count(dlq, 1)
    # a letter whose payload was gone cannot be replayed
    r.xadd(queue.dlq("g"), {"reason": "x", "offset": "1-0", "lost": "1"})
    async with app:
        dlq = app.dead_letters("raw", "g")
        lost = [x for x in await dlq.entries() if x.lost]
        assert len(lost) == 1
        assert await dlq.replay(lost) == []
        assert await dlq.replay(lost, dry_run=True) == []


async def test_bad_arguments(opened: rmq.App) -> None:
    with pytest.raises(rmq.InvalidName):
        opened.dead_letters("bad topic", "g")
    dlq = opened.dead_letters("none", "g")
    assert await dlq.count() == 0
    with pytest.raises(rmq.ConfigError):
        await dlq.replay(to="elsewhere")  # type: ignore[arg-type]
    with pytest.raises(rmq.ConfigError):
        await dlq.entries(0)
