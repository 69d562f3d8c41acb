"""Retries, handler signals and the dead-letter queue (run: python retries.py)."""

from collections import Counter
from functools import partial

import anyio

import rmq

app = rmq.App()
attempts: Counter[int] = Counter()


# --8<-- [start:policies]
rocketmq_default = None  # retry=None: 10s 30s 1m 2m ... 2h, RocketMQ's schedule for 16 retries
a_list = [1, 5, 30]  # one delay per retry; retries past the end reuse the last one
one_delay = 2.5  # the same delay before every retry (rmq.Fixed(2.5))
exponential = rmq.Exponential(initial=1, factor=2, max=600, jitter=0.1)
explicit = rmq.Schedule([1, 5, 30])
assert 3.6 <= exponential.delay(3) <= 4.4  # 1 * 2**2, +/- 10%
assert explicit.delay(1) == 1 and explicit.delay(9) == 30
# --8<-- [end:policies]


# --8<-- [start:signals]
@app.consumer("payments", group="charging", retry=[0.2, 0.5], max_retries=2)
async def charge(msg: rmq.Message) -> None:
    order = msg.body
    attempts[order["id"]] += 1
    if order["kind"] == "flaky" and msg.reconsume_times == 0:
        raise ConnectionError("gateway timeout")  # any exception: retry after the backoff
    if order["kind"] == "later" and msg.reconsume_times == 0:
        raise rmq.Retry(delay=0.1)  # retry, with this delay instead of the policy's
    if order["kind"] == "invalid":
        raise rmq.Reject("unknown currency")  # dead-letter at once
    if order["kind"] == "test":
        raise rmq.Skip  # acknowledge without handling (counted as skipped)
    if order["kind"] == "broken":
        raise ValueError("cannot parse")  # fails every time: dead-lettered after max_retries


# --8<-- [end:signals]


async def main() -> None:
    kinds = ["ok", "flaky", "later", "invalid", "test", "broken"]
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))
        for n, kind in enumerate(kinds):
            await app.send("payments", {"id": n, "kind": kind})
        dlq = app.dead_letters("payments", "charging")
        with anyio.fail_after(30):
            while await dlq.count() < 2 or sum(attempts.values()) < 10:
                await anyio.sleep(0.05)
        app.stop()
    assert attempts == Counter({0: 1, 1: 2, 2: 2, 3: 1, 4: 1, 5: 3}), attempts

    async with app:
        # --8<-- [start:dlq]
        dlq = app.dead_letters("payments", "charging")
        print(await dlq.count(), "dead letters")
        letters = await dlq.entries(limit=50)  # oldest first; .message is the decoded message
        for letter in letters:
            print(letter.msg_id, letter.reason, letter.attempts, letter.error)
        # 01A2...C8F rejected 1 unknown currency
        # 01A2...C91 max_retries 3 ValueError: cannot parse
        replayed = await dlq.replay(letters[:1], to="group")  # this group only, fresh retries
        await dlq.replay(to="topic")  # all the rest, to every group of the topic
        await dlq.purge()  # or purge(letters) for some, purge_older_than(7 * 86400) by age
        # --8<-- [end:dlq]
        reasons = sorted(letter.reason for letter in letters)
        assert reasons == ["max_retries", "rejected"], reasons
        assert {letter.error for letter in letters} == {
            "unknown currency",
            "ValueError: cannot parse",
        }
        assert len(replayed) == 1 and await dlq.count() == 0


if __name__ == "__main__":
    anyio.run(main)
