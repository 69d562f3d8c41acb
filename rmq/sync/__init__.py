"""rmq.sync: a thread-safe blocking client, for code without an event loop.

```python
import rmq.sync

client = rmq.sync.App()                      # settings from RMQ_*; keyword arguments override
result = client.send("orders", {"id": 1}, tag="paid")   # blocks until stored: a SendResult
client.send_oneway("logs", "a line")         # queued; stored before close() or exit returns
future = client.send_async("orders", b"raw") # a concurrent.futures.Future[SendResult]
client.send_batch("orders", [{"id": 2}, {"id": 3}])

producer = client.producer(group="order-service", checker=check)
producer.send_in_transaction("payments", body, execute=write_order)   # runs in this thread
with producer.transaction() as tx:
    tx.send("payments", body)

with client.pull_consumer("orders", "reports") as pc:
    for msg in pc.receive(max_messages=10, wait=5):
        pc.ack(msg)
client.close()                               # flush, disconnect (also done at exit)
```

The methods and their keyword arguments are those of `rmq.App`, `rmq.Producer`,
`rmq.Transaction` and `rmq.PullConsumer`; they block instead of returning awaitables.
Underneath, one background thread per client runs an event loop (uvloop when installed) with an
`rmq.App`: the same wire format, dedup and group commit, so concurrent threads share round trips.
"""

from .app import App
from .producer import ErrorCallback, Producer, SendCallback, Transaction
from .pull import PullConsumer

__all__ = ["App", "ErrorCallback", "Producer", "PullConsumer", "SendCallback", "Transaction"]
