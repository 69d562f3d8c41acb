"""Push consumers: decorated handlers, run in this process (run: python consumers.py)."""

from collections.abc import Callable
from functools import partial

import anyio

import rmq

app = rmq.App()
billed: list[int] = []
archived: list[str] = []


# --8<-- [start:handlers]
@app.consumer("orders", group="billing", concurrency=20)
async def bill(msg: rmq.Message) -> None:  # return = ack; raise = retry after a backoff
    billed.append(msg.body["id"])


@app.consumer("audit", group="archive", start="first", retry=[1, 5, 30], max_retries=3, timeout=10)
def archive(msg: rmq.Message) -> None:  # plain functions run in worker threads
    archived.append(f"{msg.topic}[{msg.queue_id}]@{msg.offset} try {msg.reconsume_times}")


# --8<-- [end:handlers]


async def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.02)


async def main() -> None:
    # --8<-- [start:run]
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))  # what `rmq worker run` runs
        for n in range(10):
            await app.send("orders", {"id": n})
        await app.send("audit", "user 7 logged in")
        await wait_for(lambda: len(billed) == 10 and len(archived) == 1)
        app.stop()  # graceful: finish running handlers, flush acks, then return
    # --8<-- [end:run]
    assert sorted(billed) == list(range(10)), billed
    print(archived[0])


if __name__ == "__main__":
    anyio.run(main)
