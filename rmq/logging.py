"""Logging setup for workers and the command line: stdlib logging under `rmq.*`.

`configure()` logs to stderr as text, or as one JSON object per line when `RMQ_LOG_FORMAT=json`
(for log shippers). rmq never logs message bodies at INFO, nor Redis key names: a record about a
topic, group, queue, offset or message carries them as fields (`extra=fields(...)`), which the
JSON format emits as keys and the text format appends as `[topic=orders queue=2 ...]`, so
messages stay short and filterable.

```python
rmq.logging.configure("INFO")                      # what `rmq worker run` does
logging.config.dictConfig(rmq.logging.default_log_config("DEBUG", "json"))
```
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from .errors import ConfigError

__all__ = [
    "FIELDS",
    "FORMATS",
    "LEVELS",
    "JsonFormatter",
    "TextFormatter",
    "check_level",
    "configure",
    "default_log_config",
    "fields",
]

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


FIELDS = ("topic", "group", "queue", "offset", "msg_id")
"""The structured fields of rmq's records (JSON keys; appended to text lines)."""


def fields(
    *,
    topic: str | None = None,
    group: str | None = None,
    queue: int | None = None,
    offset: str | None = None,
    msg_id: str | None = None,
    stream: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """`extra=` for a log call: the given fields (None left out). `stream`, a queue's stream
    key (or `<key>@<offset>`), gives its topic, queue and offset instead of being logged."""
    if stream is not None:
        key, _, at = stream.partition("@")
        tag = key[key.find("{") + 1 : key.find("}")] if "{" in key and "}" in key else ""
        name, _, number = tag.rpartition(":")
        topic = topic or name or None
        if queue is None and number.isdigit():
            queue = int(number)
        offset = offset or at or None
        if ":rs:" in key:
            more.setdefault("retry_stream", True)
    found = {"topic": topic, "group": group, "queue": queue, "offset": offset, "msg_id": msg_id}
    return {k: v for k, v in {**found, **more}.items() if v is not None}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[:1] != "_"}


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, then the record's fields as `[topic=orders group=billing queue=2]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = _extra(record)
        if not extra:
            return text
        shown = " ".join(f"{k}={v}" for k, v in extra.items())
        head, newline, rest = text.partition("\n")  # after the first line, not the traceback
        return f"{head} [{shown}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, pid, any `extra=` fields, and
    the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        out.update(_extra(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def _format(fmt: str | None) -> str:
    chosen = (fmt or os.environ.get("RMQ_LOG_FORMAT") or "text").strip().lower()
    if chosen not in FORMATS:
        raise ConfigError(f"RMQ_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {chosen!r}")
    return chosen


def default_log_config(level: str | int = "INFO", fmt: str | None = None) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: every logger (`rmq.*` and the application's) to
    stderr, as text or JSON."""
    chosen = _format(fmt)
    formatter: dict[str, Any] = {"()": JsonFormatter if chosen == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"rmq": formatter},
        "handlers": {
            "rmq": {"class": "logging.StreamHandler", "formatter": "rmq", "stream": sys.stderr}
        },
        "root": {"handlers": ["rmq"], "level": level},
    }


def check_level(level: str | int) -> str | int:
    """`level` as logging takes it ("info" -> "INFO"); raises `ConfigError` naming the valid
    levels otherwise."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    chosen = str(level).strip().upper()
    if chosen not in LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    return chosen


def configure(level: str | int = "INFO", fmt: str | None = None) -> None:
    """Send logs (`rmq.*` and the application's) to stderr at `level` (one of `LEVELS`), as
    text or JSON (`fmt`, else `RMQ_LOG_FORMAT`)."""
    logging.config.dictConfig(default_log_config(check_level(level), fmt))
