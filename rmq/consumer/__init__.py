"""Consumers: push (decorator-registered, run by workers) and pull (receive/ack on demand)."""

from .pull import PullConsumer
from .push import ConsumerStats, PushConsumer
from .spec import ConsumerSpec, Handler, StartPosition

__all__ = [
    "ConsumerSpec",
    "ConsumerStats",
    "Handler",
    "PullConsumer",
    "PushConsumer",
    "StartPosition",
]
