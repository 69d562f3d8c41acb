"""The blocking client, for code without an event loop (run: python blocking.py)."""

import threading

import rmq
import rmq.sync

# --8<-- [start:send]
client = rmq.sync.App()  # settings from RMQ_*; connects on first use, closed at exit

result = client.send("orders", {"id": 1}, tag="paid", keys=["order-1"])  # blocks until stored
future = client.send_async("orders", {"id": 2})  # a concurrent.futures.Future[SendResult]
client.send_oneway("logs", "order 1 paid")  # queued; stored before flush/close/exit return
results = client.send_batch("orders", [{"id": 3}, {"id": 4}])  # one queue, one round trip
later = client.send("reminders", {"id": 1}, delay=60)  # delay=, deliver_at=, delay_level=
client.flush()  # every queued send stored (or failed)
# --8<-- [end:send]
assert result.offset and future.result(timeout=5).offset and len(results) == 2
assert later.deliver_at is not None and client.cancel_delayed("reminders", later.msg_id)


# --8<-- [start:threads]
def view(n: int) -> None:  # a request thread of a web app: any number may send at once
    client.send("orders", {"id": 100 + n})  # concurrent sends share round trips


threads = [threading.Thread(target=view, args=(n,)) for n in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
# --8<-- [end:threads]

# --8<-- [start:transactions]
orders_table: set[int] = set()


def write_order(msg: rmq.Message, order_id: int) -> rmq.TransactionState:
    orders_table.add(order_id)  # runs in this thread: its database connection, its transaction
    return rmq.TransactionState.COMMIT


producer = client.producer(group="order-service")
sent = producer.send_in_transaction("payments", {"id": 7}, execute=write_order, arg=7)
assert sent.local_state is rmq.TransactionState.COMMIT and 7 in orders_table

with producer.transaction() as tx:  # several messages, one outcome
    tx.send("payments", {"id": 8})
    tx.send("ledger", {"id": 8}, keys=["order-8"])
assert tx.state is rmq.TransactionState.COMMIT
# --8<-- [end:transactions]

# --8<-- [start:pull]
with client.pull_consumer("orders", group="reports", start="first") as pc:
    msgs = pc.receive(max_messages=32, invisible=30, wait=5)
    pc.ack(*msgs)
# --8<-- [end:pull]
assert len(msgs) == 4 + 16, len(msgs)

# --8<-- [start:close]
client.close()  # flush, disconnect; later calls raise rmq.ProducerClosed
# --8<-- [end:close]
print("sent", len(msgs), "orders; transaction", tx.state)
