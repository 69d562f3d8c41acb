"""The vocabulary of transactional messages: states, results, callbacks, and a half message."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..message import Message, SendResult, SendStatus
from ..outgoing import Encoded, Outgoing, When

__all__ = [
    "Decision",
    "HalfMessage",
    "LocalTransaction",
    "TransactionChecker",
    "TransactionSendResult",
    "TransactionState",
    "When",
]


class TransactionState(enum.StrEnum):
    """What a local transaction or a check-back decided (RocketMQ's LocalTransactionState)."""

    COMMIT = "COMMIT"
    """Deliver the message."""
    ROLLBACK = "ROLLBACK"
    """Discard the message: no consumer ever sees it."""
    UNKNOWN = "UNKNOWN"
    """Not decided yet: keep the half message and ask the checker again later."""


Decision = TransactionState | None
"""What a local transaction or checker returns; None counts as UNKNOWN (as RocketMQ's null)."""
LocalTransaction = Callable[[Message, Any], Decision | Awaitable[Decision]]
"""`execute(msg, arg) -> TransactionState` (sync or async) for `Producer.send_in_transaction`."""
TransactionChecker = Callable[[Message], Decision | Awaitable[Decision]]
"""`check(msg) -> TransactionState` (sync or async): the check-back of a producer group."""


@dataclass(frozen=True, slots=True)
class TransactionSendResult(SendResult):
    """A `SendResult` plus what the local transaction decided (RocketMQ's TransactionSendResult).

    `offset` is the stream entry id when the message was committed and is visible now; it is ""
    when the message was rolled back, left for the check-back (UNKNOWN) or committed with a delay
    (then `deliver_at` says when it becomes visible).
    """

    local_state: TransactionState = TransactionState.UNKNOWN


@dataclass(frozen=True, slots=True)
class HalfMessage:
    """A message on its way into a transaction: encoded, its queue chosen, not yet prepared."""

    topic: str
    queue_id: int
    encoded: Encoded
    out: Outgoing

    @property
    def msg_id(self) -> str:
        return self.encoded.msg_id

    @property
    def when(self) -> When | None:
        return self.encoded.when

    def message(self, group: str) -> Message:
        """The message as the local transaction sees it (no offset: it is not stored yet)."""
        msg = self.out.message()
        msg.msg_id = self.msg_id
        msg.topic = self.topic
        msg.queue_id = self.queue_id
        msg.group = group
        return msg

    def result(
        self, state: TransactionState, committed: tuple[str, int] | None
    ) -> TransactionSendResult:
        """The send result, given the commit's (entry id, due ms) when it was committed."""
        offset, deliver_at = "", None
        if committed is not None:
            offset, due = committed
            if not offset and due:
                deliver_at = datetime.fromtimestamp(due / 1000, UTC)
        return TransactionSendResult(
            SendStatus.SEND_OK, self.msg_id, self.topic, self.queue_id, offset, deliver_at, state
        )
