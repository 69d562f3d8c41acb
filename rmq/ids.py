"""Ids: message ids, stream entry ids and consumer names.

A message id is 32 upper-case hex chars, unique across processes, sortable by creation time
(RocketMQ-style hex): 12 hex of the birth time in ms, 12 hex of a random per-process prefix, 8 hex
of a per-process counter. The prefix is re-drawn after `fork()`, so children never repeat their
parent's ids. The counter is an `itertools.count`, whose `next()` is atomic: threads making ids
at once (the blocking client sends from its callers' threads too) never draw the same one.
`born_ms(msg_id)` recovers the birth time without another field.

A stream entry id is `<ms>-<seq>` (the queue offset): `entry_ms` and `entry_key` read it.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

__all__ = ["born_ms", "consumer_name", "entry_key", "entry_ms", "new_msg_id"]


class _IdState:
    __slots__ = ("count", "prefix")

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(6).hex().upper()
        self.count = itertools.count(int.from_bytes(os.urandom(3), "big") + 1)


_HEX_DIGITS = "0123456789ABCDEFabcdef"
_state = _IdState()
os.register_at_fork(after_in_child=_state.reseed)


def new_msg_id() -> str:
    """Return a new unique message id."""
    state = _state
    return f"{time.time_ns() // 1_000_000:012X}{state.prefix}{next(state.count) & 0xFFFFFFFF:08X}"


def born_ms(msg_id: str) -> int | None:
    """Birth time (epoch ms) of an rmq message id, or None for ids made elsewhere."""
    if len(msg_id) != 32:
        return None
    head = msg_id[:12]
    if head.strip(_HEX_DIGITS):  # something other than hex digits (int() would allow "0x", "_")
        return None
    return int(head, 16)


def entry_ms(entry_id: str | bytes) -> int:
    """The millisecond timestamp of a stream entry id (`<ms>-<seq>`)."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    return int(entry_id.partition("-")[0])


def entry_key(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry id as a sortable (ms, seq) pair (a bare `<ms>` has seq 0)."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
