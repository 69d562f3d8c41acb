"""The tracing hooks of rmq's hot paths: each is None until `rmq.tracing.instrument()` sets it,
so code that is not traced pays one `is None` test per message, and nothing here imports
OpenTelemetry.

- `on_send(out, msg_id, properties) -> properties`: from `rmq.outgoing.encode`, once per
  message sent; returns the properties to store (the trace context added).
- `on_handling(handling)`: from `rmq.consumer.handling.Handling.__init__`, once per consumer
  runtime; wraps its handler calls in spans.
- `on_receive(pull_consumer, messages)`: from `rmq.consumer.pull.PullConsumer.receive`, per
  call that returns messages.
- `on_transaction(what, topic, queue_id, msg_ids)`: from `rmq.transaction.store.HalfStore`,
  per commit or rollback (`what` is "commit" or "rollback").

`QUIET` is set (a context variable) while rmq encodes a message only to check it (`rmq.sync`
checks in the caller's thread and stores from its loop): no span is made for that encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..consumer.handling import Handling
    from ..consumer.pull import PullConsumer
    from ..message import Message
    from ..outgoing import Outgoing

__all__ = ["QUIET", "on_handling", "on_receive", "on_send", "on_transaction"]

on_send: Callable[[Outgoing, str, dict[str, str] | None], dict[str, str] | None] | None = None
on_handling: Callable[[Handling], None] | None = None
on_receive: Callable[[PullConsumer, Sequence[Message]], None] | None = None
on_transaction: Callable[[str, str, int, Sequence[str]], None] | None = None

QUIET: ContextVar[bool] = ContextVar("rmq_tracing_quiet", default=False)


def installed() -> bool:
    """Whether tracing hooks are set."""
    return on_send is not None
