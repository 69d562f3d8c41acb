"""Consumers: push (decorator-registered, run by workers) and pull (receive/ack on demand)."""

from .pull import PullConsumer
from .push import PushConsumer
from .spec import ConsumerSpec, Handler, StartPosition
from .stats import ConsumerStats

__all__ = [
    "ConsumerSpec",
    "ConsumerStats",
    "Handler",
    "PullConsumer",
    "PushConsumer",
    "StartPosition",
]
