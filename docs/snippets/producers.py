"""Sending: every send mode, queue selection, bodies and limits (run: python producers.py)."""

import anyio

import rmq

app = rmq.App()


async def main() -> None:
    async with app:
        # --8<-- [start:send]
        result = await app.send(
            "orders", {"id": 1}, tag="paid", keys=["order-1"], properties={"region": "eu"}
        )
        print(result)
        # SendResult(status=<SendStatus.SEND_OK: 'SEND_OK'>, msg_id='...', topic='orders',
        #            queue_id=2, offset='1732550400000-0', deliver_at=None)
        # --8<-- [end:send]
        assert result.status is rmq.SendStatus.SEND_OK and result.offset

        # --8<-- [start:async]
        def on_sent(result: rmq.SendResult) -> None:
            print("stored at", result.queue_id, result.offset)

        def on_failed(error: BaseException) -> None:
            print("not sent:", error)

        future = app.send_async("orders", b"raw bytes", callback=on_sent, on_error=on_failed)
        app.send_oneway("logs", "a line")  # queued for the next round trip, never waited for
        await app.flush()  # wait for every pending async and one-way send
        print((await future).offset)
        # --8<-- [end:async]

        # --8<-- [start:batch]
        results = await app.send_batch(
            "orders", [rmq.Message({"id": 2}, tag="paid"), rmq.Message({"id": 3})]
        )
        assert results[0].queue_id == results[1].queue_id  # one queue, consecutive offsets
        # --8<-- [end:batch]
        assert results[0].offset < results[1].offset

        # --8<-- [start:select]
        first = await app.send("orders", {"id": 4}, sharding_key="user-42")
        again = await app.send("orders", {"id": 5}, sharding_key="user-42")
        assert first.queue_id == again.queue_id  # same key, same queue, in send order

        def to_first_queue(queue_count: int, msg: rmq.Message) -> int:
            return 0  # RocketMQ's MessageQueueSelector: pick a queue id in 0..queue_count-1

        pinned = await app.send("orders", {"id": 6}, selector=to_first_queue)
        assert pinned.queue_id == 0
        # --8<-- [end:select]

        # --8<-- [start:bodies]
        for body in (b"\x00\x01 bytes", "text", {"json": [1, 2.5, None]}, "x" * 10_000):
            await app.send("bodies", body)  # the type travels: consumers get back what was sent
        try:
            await app.send("bodies", b"x" * (app.settings.max_body_bytes + 1))
        except rmq.MessageTooLarge as exc:
            print("refused, nothing written:", exc)
        try:
            await app.send("orders", {"id": 7}, tag="bad tag with spaces")
        except rmq.InvalidName as exc:
            print("refused:", exc)
        # --8<-- [end:bodies]

        # --8<-- [start:producer]
        producer = app.producer(group="order-service")  # same methods; transactions hang off it
        await producer.send("orders", {"id": 8})
        # --8<-- [end:producer]


if __name__ == "__main__":
    anyio.run(main)
