"""Message ids: 32 upper-case hex chars, unique across processes, sortable by creation time.

Layout (RocketMQ-style hex): 12 hex of the birth time in ms, 12 hex of a random per-process
prefix, 8 hex of a per-process counter. The prefix is re-drawn after `fork()`, so children never
repeat their parent's ids. `born_ms(msg_id)` recovers the birth time without another field.
"""

from __future__ import annotations

import os
import time

__all__ = ["born_ms", "new_msg_id"]


class _IdState:
    __slots__ = ("counter", "prefix")

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(6).hex().upper()
        self.counter = int.from_bytes(os.urandom(3), "big")


_HEX_DIGITS = "0123456789ABCDEFabcdef"
_state = _IdState()
os.register_at_fork(after_in_child=_state.reseed)


def new_msg_id() -> str:
    """Return a new unique message id."""
    state = _state
    state.counter = (state.counter + 1) & 0xFFFFFFFF
    return f"{time.time_ns() // 1_000_000:012X}{state.prefix}{state.counter:08X}"


def born_ms(msg_id: str) -> int | None:
    """Birth time (epoch ms) of an rmq message id, or None for ids made elsewhere."""
    if len(msg_id) != 32:
        return None
    head = msg_id[:12]
    if head.strip(_HEX_DIGITS):  # something other than hex digits (int() would allow "0x", "_")
        return None
    return int(head, 16)
