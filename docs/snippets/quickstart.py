import anyio

import rmq

app = rmq.App()  # settings from RMQ_* environment variables


@app.consumer("orders", group="billing")
async def bill(msg: rmq.Message) -> None:
    print(f"billing order {msg.body['id']} (tag {msg.tag}, queue {msg.queue_id})", flush=True)


async def main() -> None:
    async with app:  # connects, loads the scripts, declares the billing group
        for n in range(3):
            result = await app.send("orders", {"id": n}, tag="paid", keys=[f"order-{n}"])
            print("sent", result.msg_id, "to queue", result.queue_id, "at offset", result.offset)


if __name__ == "__main__":
    anyio.run(main)
