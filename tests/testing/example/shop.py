"""A user's service, the kind rmq.testing is for: it bills orders and mails the receipts."""

from __future__ import annotations

import rmq

app = rmq.App()  # RMQ_* settings in production; the tests point it at their own server

ledger: dict[int, int] = {}  # order id -> amount billed
mailed: list[int] = []  # order ids whose receipt went out


@app.consumer("orders", group="billing", retry=0.05)
async def bill(msg: rmq.Message) -> None:
    order = msg.body
    if order["amount"] < 0:
        raise rmq.Reject("negative amount")
    if order.get("flaky") and msg.reconsume_times < 2:
        raise RuntimeError("payment service timed out")
    ledger[order["id"]] = order["amount"]
    await app.send("receipts", {"id": order["id"]}, keys=[f"order-{order['id']}"])


@app.consumer("receipts", group="mailer")
def mail(msg: rmq.Message) -> None:
    mailed.append(msg.body["id"])
