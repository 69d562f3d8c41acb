"""Fault scenarios: a TCP fault proxy between rmq and a real Redis (tests/proxy.py), a full Redis,
ACL refusals, foreign entries, worker start failures.

Every scenario counts what happened and reports it (`Report`): one `FAULT {...}` line on stdout
and `faults.json` under the test's tmp dir, plus one JSON line appended to `$RMQ_FAULTS_REPORT`
when that variable names a file (to collect the figures of a whole run). Each asserts
`lost == 0`. Timeouts are settings, made short here (`fault_settings`), so every scenario takes
seconds.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rmq
from tests.helpers import make_settings

__all__ = ["FAULT_TIMEOUTS", "Handled", "Report", "fault_settings"]

FAULT_TIMEOUTS: dict[str, Any] = {
    "connect_timeout": 0.5,
    "socket_timeout": 1.0,
    "block_seconds": 0.3,
    "send_timeout": 3.0,
    "startup_timeout": 3.0,
    "visibility_timeout": 3.0,
    "claim_interval": 0.3,
    "backoff_base": 0.02,
    "backoff_cap": 0.3,
    "shutdown_grace": 3.0,
    "lease_ttl": 3.0,
    "rebalance_interval": 0.3,
    "heartbeat_interval": 0.2,
    "restart_delay": 0.1,
}
"""Short timeouts: a silent link is noticed after block_seconds + socket_timeout = 1.3 s."""


def fault_settings(url: str, namespace: str, **overrides: Any) -> rmq.Settings:
    return make_settings(url, namespace, **{**FAULT_TIMEOUTS, **overrides})


@dataclass
class Handled:
    """What a handler saw: how often each msg_id was handled, and when the last one was."""

    counts: Counter[str] = field(default_factory=Counter)
    last_at: float = 0.0

    def record(self, msg: rmq.Message) -> None:
        self.counts[msg.msg_id] += 1
        self.last_at = time.monotonic()

    @property
    def ids(self) -> set[str]:
        return set(self.counts)

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)


@dataclass
class Report:
    """The figures of one fault scenario."""

    scenario: str
    sent: int = 0
    acknowledged: int = 0
    failed_sends: int = 0
    handled: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def count(
        self, acknowledged: set[str], handled: Handled, *, elsewhere: frozenset[str] = frozenset()
    ) -> None:
        """Fill handled/lost/duplicated from the acknowledged ids and what the handler saw
        (`elsewhere`: ids accounted for otherwise, e.g. dead-lettered)."""
        self.acknowledged = len(acknowledged)
        self.handled = len(handled.ids & acknowledged)
        self.lost = len(acknowledged - handled.ids - elsewhere)
        self.duplicated = handled.duplicated

    def write(self, directory: Path) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        data["server"] = os.environ.get("RMQ_TEST_SERVER", "redis")
        if self.recovery_seconds is not None:
            data["recovery_seconds"] = round(self.recovery_seconds, 3)
        line = json.dumps(data, sort_keys=True)
        print(f"FAULT {line}")
        (directory / "faults.json").write_text(line + "\n")
        target = os.environ.get("RMQ_FAULTS_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as out:
                out.write(line + "\n")
        return data
