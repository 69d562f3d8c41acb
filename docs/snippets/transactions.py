"""Transactional messages: local transaction, check-back, several messages (run: python
transactions.py). The "database" is a set; in a real service it is your database."""

from functools import partial

import anyio

import rmq

orders_table: set[int] = set()
charged: list[int] = []
app = rmq.App()


@app.consumer("payments", group="payment-service")
async def charge(msg: rmq.Message) -> None:
    charged.append(msg.body["id"])


# --8<-- [start:execute]
def write_order(msg: rmq.Message, order: dict[str, int]) -> rmq.TransactionState:  # or async
    if order["stock"] == 0:
        return rmq.TransactionState.ROLLBACK  # the message is discarded: nobody sees it
    orders_table.add(order["id"])  # your local transaction (a database write)
    return rmq.TransactionState.COMMIT  # the message becomes visible


def check(msg: rmq.Message) -> rmq.TransactionState:  # the check-back: did that write commit?
    committed = msg.body["id"] in orders_table
    return rmq.TransactionState.COMMIT if committed else rmq.TransactionState.ROLLBACK


producer = app.producer(group="order-service", checker=check)


async def place(order: dict[str, int]) -> rmq.TransactionSendResult:
    return await producer.send_in_transaction(
        "payments", {"id": order["id"]}, execute=write_order, arg=order,
        keys=[f"order-{order['id']}"],
    )  # fmt: skip


# --8<-- [end:execute]


async def main() -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))
        # --8<-- [start:results]
        placed = await place({"id": 1, "stock": 3})
        print(placed.local_state, placed.offset)  # COMMIT 1732550400000-0
        refused = await place({"id": 2, "stock": 0})
        assert refused.local_state is rmq.TransactionState.ROLLBACK and refused.offset == ""
        # --8<-- [end:results]

        # --8<-- [start:block]
        async with producer.transaction() as tx:  # several messages, one outcome
            await tx.send("payments", {"id": 3}, keys=["order-3"])
            await tx.send("ledger", {"order": 3, "cents": 1250}, keys=["order-3"], delay=30)
            orders_table.add(3)  # leaving normally commits; an exception rolls back
        print(tx.state, [r.offset for r in tx.results])  # COMMIT ["1732550400000-0", ""]
        # --8<-- [end:block]
        assert tx.state is rmq.TransactionState.COMMIT

        # --8<-- [start:unknown]
        def cannot_tell(msg: rmq.Message, order: dict[str, int]) -> None:
            orders_table.add(order["id"])  # committed, but the confirmation got lost:
            return None  # None (or UNKNOWN) leaves the half message to the check-back

        unsure = await producer.send_in_transaction(
            "payments", {"id": 4}, execute=cannot_tell, arg={"id": 4}
        )
        assert unsure.local_state is rmq.TransactionState.UNKNOWN
        # after transaction_check_immunity (6 s), check() answers COMMIT: id 4 is charged
        # --8<-- [end:unknown]
        with anyio.fail_after(60):
            while sorted(charged) != [1, 3, 4]:
                await anyio.sleep(0.05)
        app.stop()
    print("charged", sorted(charged))


if __name__ == "__main__":
    anyio.run(main)
