"""After: the same with rmq (run: python rocketmq_after.py)."""

import anyio

import rmq


async def main() -> None:
    # --8<-- [start:after]
    app = rmq.App()  # no endpoints to configure: RMQ_REDIS_URL names the Redis
    async with app:
        async with app.pull_consumer("orders", "billing") as consumer:  # declares the group
            receipt = await app.send(
                "orders", {"id": 1}, tag="paid", keys=["order-1"], properties={"region": "eu"}
            )  # SendResult: msg_id, queue_id, offset, ...
            for received in await consumer.receive(32, invisible=15, wait=1):
                print(received.msg_id, received.body)
                await consumer.ack(received)
    # --8<-- [end:after]
    assert received.msg_id == receipt.msg_id


if __name__ == "__main__":
    anyio.run(main)
