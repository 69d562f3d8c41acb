"""A pull consumer: receive, ack, change the invisible time, nack (run: python pull.py)."""

import anyio

import rmq

app = rmq.App()


async def main() -> None:
    async with app:
        # --8<-- [start:pull]
        async with app.pull_consumer("reports", group="reporting", start="first") as pc:
            for n in range(3):
                await app.send("reports", {"report": n})
            msgs = await pc.receive(max_messages=32, invisible=30, wait=5)  # long-polls up to 5 s
            assert len(msgs) == 3
            await pc.ack(msgs[0])
            assert await pc.change_invisible_duration(msgs[1], 60)  # False if no longer yours
            await pc.nack(msgs[2], delay=0.5)  # back to the group after 0.5 s

            again = await pc.receive(wait=5)
            assert again[0].msg_id == msgs[2].msg_id and again[0].delivery_count == 2
            await pc.ack(*again, msgs[1])
        # --8<-- [end:pull]
        print("received", [m.body["report"] for m in msgs], "then", again[0].body)


if __name__ == "__main__":
    anyio.run(main)
