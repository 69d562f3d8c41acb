"""What commands print: one JSON document with `--json`, rich tables otherwise; errors on stderr.

JSON conventions (stable, checked against a JSON Schema per command: `cli/schemas.py`): every
document is an object whose first key is `schema_version` (`SCHEMA_VERSION`, raised on any
incompatible change); snake_case keys; lists are under a named key and hold objects (per queue:
with `queue_id`); a document about a topic or a group names it (`topic`, `group`); enum values are
lower-case strings; times are ISO 8601 UTC strings named `*_at`; durations are float seconds named
`*_seconds`; stream ids (offsets) are strings; a value Redis cannot tell is null (never ""). Bytes
bodies are base64 strings with `"body_type": "bytes"`; no other field carries raw wire bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from rmq.admin import StoredMessage
from rmq.message import Message

__all__ = ["SCHEMA_VERSION", "Output", "error", "jsonable", "message_doc", "short"]

_NON_TTY_WIDTH = 160

SCHEMA_VERSION = 1
"""The version of every `--json` document's layout (see cli/schemas.py)."""


def jsonable(value: Any) -> Any:
    """`value` with datetimes, dataclasses, bytes and enums made JSON-friendly."""
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, enum.Enum):
        return str(value.value).lower()
    if isinstance(value, frozenset | set):
        return sorted(jsonable(v) for v in value)
    return value


def message_doc(msg: StoredMessage | Message) -> dict[str, Any]:
    """The JSON of one message (the same keys for stored and consumed messages)."""
    body = msg.body
    body_type = "bytes" if isinstance(body, bytes) else "str" if isinstance(body, str) else "json"
    doc: dict[str, Any] = {
        "topic": msg.topic,
        "queue_id": msg.queue_id,
        "offset": msg.offset,
        "msg_id": msg.msg_id,
        "tag": msg.tag,
        "keys": list(msg.keys),
        "properties": dict(msg.properties),
        "body_type": body_type,
        "body": jsonable(body),
        "born_at": jsonable(msg.born_at),
        "stored_at": jsonable(msg.stored_at),
    }
    if isinstance(msg, Message):
        doc["group"] = msg.group
        doc["delivery_count"] = msg.delivery_count
    elif msg.error is not None:
        doc["error"] = msg.error
        doc["raw"] = msg.raw
    return doc


def short(value: Any, limit: int = 60) -> str:
    """A one-line preview of a body or value."""
    if isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, str):
        text = value
    else:
        text = orjson.dumps(value).decode()
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error(message: str) -> None:
    """Print a diagnostic on stderr."""
    typer.echo(f"error: {message}", err=True)


class Output:
    """Stdout of one command, as JSON or as human-readable text."""

    def __init__(self, json: bool) -> None:
        self.json = json
        terminal = sys.stdout.isatty()
        self.console = Console(
            width=None if terminal else _NON_TTY_WIDTH, highlight=False, soft_wrap=not terminal
        )

    def document(self, doc: dict[str, Any]) -> None:
        """Print one JSON document (with `schema_version` first)."""
        versioned = {"schema_version": SCHEMA_VERSION, **doc}
        typer.echo(orjson.dumps(jsonable(versioned), option=orjson.OPT_INDENT_2).decode())

    def json_line(self, doc: dict[str, Any]) -> None:
        """Print one compact JSON object on its own line (streaming commands)."""
        typer.echo(orjson.dumps(jsonable({"schema_version": SCHEMA_VERSION, **doc})).decode())
        sys.stdout.flush()

    def table(
        self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Print a table (numbers right-aligned)."""
        rows = [["-" if v is None else str(v) for v in row] for row in rows]
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for i, name in enumerate(columns):
            numeric = bool(rows) and all(_is_number(r[i]) for r in rows)
            table.add_column(name, justify="right" if numeric else "left", overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    def line(self, text: str) -> None:
        self.console.print(text, markup=False)


def _is_number(text: str) -> bool:
    return text == "-" or text.replace(".", "", 1).isdigit()
