"""Durations as people write them: "30" or "30s", "500ms", "5m", "2h", "3d" (seconds as a float).

One parser for the command line's options and the `RMQ_*` variables of duration settings, so
`RMQ_RETENTION=3d` means what `rmq topic update --retention 3d` means.
"""

from __future__ import annotations

import math
import re

__all__ = ["UNITS", "duration_seconds"]

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?\s*(ms|s|m|h|d)?$", re.IGNORECASE)


def duration_seconds(text: str) -> float:
    """Seconds from "30", "2.5", "500ms", "30s", "5m", "2h" or "3d"; raises ValueError."""
    value = text.strip()
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{text!r} is not a duration: use 500ms, 30s, 5m, 2h or 3d")
    unit = (match.group(2) or "s").lower()
    number = float(value[: len(value) - len(match.group(2) or "")].strip())
    seconds = number * UNITS[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a finite duration")
    return seconds
