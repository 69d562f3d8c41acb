"""Delayed messages (run: python delayed.py)."""

import time
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio

import rmq

app = rmq.App()
arrived: dict[str, float] = {}


@app.consumer("reminders", group="mailer")
async def remind(msg: rmq.Message) -> None:
    arrived[msg.body["what"]] = time.time()


async def main() -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))  # workers promote due messages
        sent = time.time()
        # --8<-- [start:delay]
        r = await app.send("reminders", {"what": "in 1 s"}, delay=1)  # seconds or a timedelta
        assert r.offset == "" and r.deliver_at is not None  # not in its queue yet
        soon = datetime.now(UTC) + timedelta(seconds=1.5)
        await app.send("reminders", {"what": "at a time"}, deliver_at=soon)
        await app.send("reminders", {"what": "level 1"}, delay_level=1)  # RocketMQ level 1 = 1 s
        later = await app.send("reminders", {"what": "cancelled"}, delay=timedelta(hours=1))
        assert await app.cancel_delayed("reminders", later.msg_id)  # False once delivered
        # --8<-- [end:delay]
        with anyio.fail_after(20):
            while len(arrived) < 3:
                await anyio.sleep(0.02)
        app.stop()
    assert set(arrived) == {"in 1 s", "at a time", "level 1"}, arrived
    for what, at in sorted(arrived.items()):
        print(f"{what}: after {at - sent:.2f} s")
        assert at - sent >= 0.9


if __name__ == "__main__":
    anyio.run(main)
