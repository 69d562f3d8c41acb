"""Every exception rmq raises, in one tree.

```
RMQError
├── ConfigError(ValueError)          bad settings, environment variables or arguments
│   └── InvalidName                  topic, group, tag, key or namespace breaks the naming rules
├── FilterSyntaxError(ValueError)    a tag or SQL92 filter does not parse (names the column)
├── BrokerError                      Redis said something rmq cannot work with
│   ├── BrokerUnavailable            Redis unreachable after retrying with backoff
│   ├── BrokerFull                   Redis is out of memory (maxmemory, noeviction): no writes
│   └── ScriptError                  a Lua script returned an error
├── TopicNotFound                    topic does not exist and auto-creation is off
├── GroupNotFound                    the consumer group does not exist on the topic (admin)
├── SerializationError(ValueError)
│   ├── EncodeError                  body or properties cannot be encoded
│   └── DecodeError                  a stream entry cannot be decoded (kept as raw fields)
├── PublishError                     a send failed
│   ├── MessageTooLarge              encoded body above the size limit, nothing written
│   └── ProducerClosed               the app or producer is closed
├── TransactionError                 a transactional (half) message cannot be resolved as asked
│   ├── TransactionNotFound          no such half message (never prepared, or resolved long ago)
│   └── TransactionStateError        resolved the other way already (commit after rollback, ...)
├── ConsumerError                    consumer misconfiguration or lifecycle error
│   └── WorkerStartError             a worker's app cannot start (reason chained)
└── HandlerSignal                    raised by handlers to steer the outcome (not logged as errors)
    ├── Retry(delay=None)            consume again later (after `delay`, else the retry policy)
    ├── Reject(reason)               straight to the dead-letter queue
    └── Skip                         acknowledge without processing
```

Catch `RMQError` to handle everything rmq raises; redis-py exceptions never escape the public API
unwrapped.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = [
    "BrokerError",
    "BrokerFull",
    "BrokerUnavailable",
    "ConfigError",
    "ConsumerError",
    "DecodeError",
    "EncodeError",
    "GroupNotFound",
    "FilterSyntaxError",
    "HandlerSignal",
    "InvalidName",
    "MessageTooLarge",
    "ProducerClosed",
    "PublishError",
    "RMQError",
    "Reject",
    "Retry",
    "ScriptError",
    "SerializationError",
    "Skip",
    "TopicNotFound",
    "TransactionError",
    "TransactionNotFound",
    "TransactionStateError",
    "WorkerStartError",
]


class RMQError(Exception):
    """Root of every rmq exception."""


class ConfigError(RMQError, ValueError):
    """A setting, environment variable or argument is invalid."""


class InvalidName(ConfigError):
    """A topic, group, tag, key or namespace breaks the naming rules."""


class FilterSyntaxError(RMQError, ValueError):
    """A tag expression or SQL92 selector is malformed.

    `reason` says what is wrong and `column` where (1-based, into `expression`); the message
    shows the expression with a caret under the offending token.
    """

    def __init__(
        self, message: str, *, reason: str = "", expression: str = "", column: int = 0
    ) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.expression = expression
        self.column = column


class BrokerError(RMQError):
    """Redis answered with something rmq cannot work with."""


class BrokerUnavailable(BrokerError):
    """Redis could not be reached (or kept failing) within the retry budget."""


class BrokerFull(BrokerError):
    """Redis refused a write because it is out of memory (`maxmemory` reached and a policy that
    evicts nothing, as a message queue needs): nothing was written. Acknowledging and trimming
    still work and free memory."""


class ScriptError(BrokerError):
    """A Lua script failed on the server."""


class TopicNotFound(RMQError):
    """The topic does not exist and `strict_topics` forbids creating it."""


class GroupNotFound(RMQError):
    """An admin operation names a consumer group that does not exist on the topic."""


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


class TransactionError(RMQError):
    """A transactional (half) message cannot be committed or rolled back as asked."""


class TransactionNotFound(TransactionError):
    """No half message with this id: never prepared on that queue, or resolved so long ago
    that its outcome is forgotten (see `dedup_window`)."""


class TransactionStateError(TransactionError):
    """The half message was resolved the other way already: a commit after a rollback (by the
    producer, a check-back or `transaction_max_checks`), or a rollback after a commit."""


class ConsumerError(RMQError):
    """A consumer is misconfigured or used outside its lifecycle."""


class WorkerStartError(ConsumerError):
    """A worker's app could not start (before consuming anything): a missing topic with
    `strict_topics`, an ACL refusal, a full Redis, an unreachable one. The cause is chained;
    `unavailable` says whether Redis could not be reached (then a later start may succeed)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class HandlerSignal(RMQError):
    """Raised by a handler to choose what happens to its message."""


class Retry(HandlerSignal):
    """Consume the message again later: after `delay` seconds, else the consumer's retry policy.

    Counts as a retry: after `max_retries` the message is dead-lettered.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay
        self.reason = reason


class Reject(HandlerSignal):
    """Dead-letter the message at once, with `reason`."""

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason


class Skip(HandlerSignal):
    """Acknowledge the message without processing it (counted as skipped)."""
