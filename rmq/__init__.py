"""rmq: RocketMQ's producer/consumer model on Redis Streams.

```python
import rmq

app = rmq.App()

@app.consumer("orders", group="billing")
async def bill(msg: rmq.Message) -> None:
    print(msg.body)

async with app:
    await app.send("orders", {"id": 1}, tag="paid")
```
"""

from ._version import __version__
from .app import App
from .consumer import ConsumerSpec, PullConsumer
from .dlq import DeadLetter, DeadLetters
from .errors import (
    BrokerError,
    BrokerFull,
    BrokerUnavailable,
    ConfigError,
    ConsumerError,
    DecodeError,
    EncodeError,
    FilterSyntaxError,
    GroupNotFound,
    HandlerSignal,
    InvalidName,
    MessageTooLarge,
    ProducerClosed,
    PublishError,
    Reject,
    Retry,
    RMQError,
    ScriptError,
    SerializationError,
    Skip,
    TopicNotFound,
    TransactionError,
    TransactionNotFound,
    TransactionStateError,
)
from .message import Message, SendResult, SendStatus
from .producer import Producer
from .retry import Exponential, Fixed, RetryPolicy, Schedule
from .settings import Settings
from .transaction import Transaction, TransactionSendResult, TransactionState

__all__ = [
    "App",
    "BrokerError",
    "BrokerFull",
    "BrokerUnavailable",
    "ConfigError",
    "ConsumerError",
    "ConsumerSpec",
    "DeadLetter",
    "DeadLetters",
    "DecodeError",
    "EncodeError",
    "Exponential",
    "FilterSyntaxError",
    "Fixed",
    "GroupNotFound",
    "HandlerSignal",
    "InvalidName",
    "Message",
    "MessageTooLarge",
    "Producer",
    "ProducerClosed",
    "PublishError",
    "PullConsumer",
    "RMQError",
    "Reject",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "ScriptError",
    "SendResult",
    "SendStatus",
    "SerializationError",
    "Settings",
    "Skip",
    "TopicNotFound",
    "Transaction",
    "TransactionError",
    "TransactionNotFound",
    "TransactionSendResult",
    "TransactionState",
    "TransactionStateError",
    "__version__",
]
