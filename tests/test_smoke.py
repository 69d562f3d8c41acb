from __future__ import annotations

import anyio

import rmq
from tests.helpers import wait_until


async def test_send_and_consume(app: rmq.App) -> None:
    got: list[rmq.Message] = []

    @app.consumer("orders", group="billing")
    async def bill(msg: rmq.Message) -> None:
        got.append(msg)

    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: app.run(handle_signals=False, task_status=task_status))
        r = await app.send(
            "orders", {"id": 1}, tag="paid", keys=["order-1"], properties={"region": "eu"}
        )
        assert r.status is rmq.SendStatus.SEND_OK
        await wait_until(lambda: len(got) == 1)
        app.stop()
    msg = got[0]
    assert msg.body == {"id": 1}
    assert msg.tag == "paid"
    assert msg.keys == ["order-1"]
    assert msg.properties == {"region": "eu"}
    assert msg.msg_id == r.msg_id
    assert msg.offset == r.offset
    assert msg.queue_id == r.queue_id
