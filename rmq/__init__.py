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
from .errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    ConsumerError,
    DecodeError,
    EncodeError,
    InvalidName,
    MessageTooLarge,
    ProducerClosed,
    PublishError,
    RMQError,
    ScriptError,
    SerializationError,
    TopicNotFound,
)
from .message import Message, SendResult, SendStatus
from .producer import Producer
from .settings import Settings

__all__ = [
    "App",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "ConsumerError",
    "ConsumerSpec",
    "DecodeError",
    "EncodeError",
    "InvalidName",
    "Message",
    "MessageTooLarge",
    "Producer",
    "ProducerClosed",
    "PublishError",
    "PullConsumer",
    "RMQError",
    "ScriptError",
    "SendResult",
    "SendStatus",
    "SerializationError",
    "Settings",
    "TopicNotFound",
    "__version__",
]
