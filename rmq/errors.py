"""Every exception rmq raises, in one tree.

```
RMQError
├── ConfigError(ValueError)          bad settings, environment variables or arguments
│   └── InvalidName                  topic, group, tag, key or namespace breaks the naming rules
├── BrokerError                      Redis said something rmq cannot work with
│   ├── BrokerUnavailable            Redis unreachable after retrying with backoff
│   └── ScriptError                  a Lua script returned an error
├── TopicNotFound                    topic does not exist and auto-creation is off
├── SerializationError(ValueError)
│   ├── EncodeError                  body or properties cannot be encoded
│   └── DecodeError                  a stream entry cannot be decoded (kept as raw fields)
├── PublishError                     a send failed
│   ├── MessageTooLarge              encoded body above the size limit, nothing written
│   └── ProducerClosed               the app or producer is closed
└── ConsumerError                    consumer misconfiguration or lifecycle error
```

Catch `RMQError` to handle everything rmq raises; redis-py exceptions never escape the public API
unwrapped.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "ConsumerError",
    "DecodeError",
    "EncodeError",
    "InvalidName",
    "MessageTooLarge",
    "ProducerClosed",
    "PublishError",
    "RMQError",
    "ScriptError",
    "SerializationError",
    "TopicNotFound",
]


class RMQError(Exception):
    """Root of every rmq exception."""


class ConfigError(RMQError, ValueError):
    """A setting, environment variable or argument is invalid."""


class InvalidName(ConfigError):
    """A topic, group, tag, key or namespace breaks the naming rules."""


class BrokerError(RMQError):
    """Redis answered with something rmq cannot work with."""


class BrokerUnavailable(BrokerError):
    """Redis could not be reached (or kept failing) within the retry budget."""


class ScriptError(BrokerError):
    """A Lua script failed on the server."""


class TopicNotFound(RMQError):
    """The topic does not exist and `strict_topics` forbids creating it."""


class SerializationError(RMQError, ValueError):
    """A body or a stream entry cannot be converted."""


class EncodeError(SerializationError):
    """A body or its properties cannot be encoded."""


class DecodeError(SerializationError):
    """A stream entry cannot be decoded; `raw` holds its fields exactly as stored."""

    def __init__(self, reason: str, raw: dict[bytes, bytes] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw or {}


class PublishError(RMQError):
    """A message could not be sent."""


class MessageTooLarge(PublishError, ValueError):
    """The encoded body exceeds `max_body_bytes`; nothing was written."""


class ProducerClosed(PublishError):
    """The producer (or its app) is closed."""


class ConsumerError(RMQError):
    """A consumer is misconfigured or used outside its lifecycle."""
