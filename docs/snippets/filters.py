"""Tag and SQL92 filters (run: python filters.py)."""

from functools import partial

import anyio

import rmq

app = rmq.App()
handled: list[int] = []


# --8<-- [start:filters]
@app.consumer(
    "orders",
    group="eu-billing",
    tag="paid || refunded",
    sql="region = 'eu' AND amount BETWEEN 100 AND 5000",
)
async def bill_eu(msg: rmq.Message) -> None:
    handled.append(msg.body["id"])  # only paid or refunded EU orders of 100..5000 get here


async def send_orders() -> None:
    await app.send("orders", {"id": 1}, tag="paid", properties={"region": "eu", "amount": "250"})
    await app.send("orders", {"id": 2}, tag="paid", properties={"region": "us", "amount": "250"})
    await app.send("orders", {"id": 3}, tag="new", properties={"region": "eu", "amount": "250"})
    await app.send("orders", {"id": 4}, tag="refunded", properties={"region": "eu", "amount": "99"})
    await app.send("orders", {"id": 5}, tag="refunded", properties={"region": "eu"})  # NULL amount
    await app.send(
        "orders", {"id": 6}, tag="refunded", properties={"region": "eu", "amount": "4e3"}
    )


# --8<-- [end:filters]


async def main() -> None:
    # --8<-- [start:syntax]
    try:
        app.consumer("orders", group="broken", sql="region = 'eu' AND")(bill_eu)
    except rmq.FilterSyntaxError as exc:
        print(exc)  # names the column, with a caret under the offending token
    # --8<-- [end:syntax]
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))
        await send_orders()
        with anyio.fail_after(20):
            while True:  # wait until the group has read and acknowledged all six
                progress = await app.admin.group_progress("orders", "eu-billing")
                if progress.lag == 0 and progress.pending == 0:
                    break
                await anyio.sleep(0.05)
        app.stop()
    assert sorted(handled) == [1, 6], handled
    print("handled", sorted(handled))


if __name__ == "__main__":
    anyio.run(main)
