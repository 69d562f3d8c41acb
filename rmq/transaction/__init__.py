"""Transactional messages: half messages, commit and rollback, and the check-back.

```python
async def check(msg: rmq.Message) -> rmq.TransactionState: ...   # look the order up

producer = app.producer(group="order-service", checker=check)
result = await producer.send_in_transaction("payments", body, execute=local_tx, arg=order)

async with producer.transaction() as tx:
    await tx.send("payments", body, keys=["order-42"])
    await write_order_to_db()       # leaving normally commits; an exception rolls back
```

- `types`: `TransactionState`, `TransactionSendResult`, the callback types, `HalfMessage`.
- `store`: the prepare, commit, rollback and check_claim scripts of one producer group.
- `batcher`: concurrent calls of those scripts share round trips (group commit).
- `local`: `send_in_transaction` and `Transaction` (the producer's side).
- `checkback`: `CheckBack`, which claims unresolved half messages and asks the checker.
- `browse`: `PendingTransaction`, `DiscardedTransaction`: listing them read-only
  (`app.admin.pending_transactions(...)`, `rmq transaction list`).
"""

from .browse import DiscardedTransaction, PendingTransaction
from .checkback import CheckBack
from .local import Transaction
from .types import (
    HalfMessage,
    LocalTransaction,
    TransactionChecker,
    TransactionSendResult,
    TransactionState,
)

__all__ = [
    "CheckBack",
    "DiscardedTransaction",
    "HalfMessage",
    "LocalTransaction",
    "PendingTransaction",
    "Transaction",
    "TransactionChecker",
    "TransactionSendResult",
    "TransactionState",
]
