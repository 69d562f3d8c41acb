"""After: the same work with rmq (run: python receipts_after.py; workers: rmq worker run)."""

from functools import partial

import anyio

import rmq

sent_mail: list[str] = []  # stands in for `from shop import mailer`


class mailer:
    @staticmethod
    def send(to: str, text: str) -> None:
        sent_mail.append(f"{to}: {text}")


# --8<-- [start:after]
app = rmq.App()  # RMQ_REDIS_URL, RMQ_NAMESPACE, ... from the environment


@app.consumer(
    "receipts",
    group="mailer",
    retry=rmq.Exponential(initial=1, factor=2, max=300),
    max_retries=5,
    concurrency=8,
)
def send_receipt(msg: rmq.Message) -> None:  # any exception: retried after the backoff
    order = msg.body
    mailer.send(order["email"], f"receipt for order {order['order_id']}")


async def place_orders() -> None:
    await app.send("receipts", {"order_id": 42, "email": "ada@example.com"})
    await app.send("receipts", {"order_id": 43, "email": "alan@example.com"}, delay=30)


# run the workers: rmq worker run shop:app --processes 2 --concurrency 8
# --8<-- [end:after]


async def main() -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))
        await app.send("receipts", {"order_id": 42, "email": "ada@example.com"})
        await app.send("receipts", {"order_id": 43, "email": "alan@example.com"}, delay=0.5)
        with anyio.fail_after(20):
            while len(sent_mail) < 2:
                await anyio.sleep(0.02)
        app.stop()
    assert sorted(sent_mail) == [
        "ada@example.com: receipt for order 42",
        "alan@example.com: receipt for order 43",
    ], sent_mail
    print(sent_mail)


if __name__ == "__main__":
    anyio.run(main)
