"""A JSON Schema (draft 2020-12) for the `--json` document of every command.

`SCHEMAS` maps a command path ("topic status", "consume" for each line it prints, "version" for
`rmq --version --json`) to its schema; `rmq schema COMMAND...` prints one, and the tests validate
every command's output against its schema. The conventions they pin down are in cli/output.py:
`schema_version` first, snake_case, per-queue lists of objects with `queue_id`, `topic`/`group`
named, lower-case enums, null for what is unknown, no raw wire fields.
"""

from __future__ import annotations

from typing import Any

from .output import SCHEMA_VERSION

__all__ = ["SCHEMAS", "schema_for"]

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number", "minimum": 0}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
OFFSET: Schema = {"type": "string", "pattern": r"^\d+-\d+$"}
MSG_ID: Schema = {"type": "string", "minLength": 1}
NAME: Schema = {"type": "string", "pattern": r"^[%A-Za-z0-9_-]+$"}


def null(schema: Schema) -> Schema:
    """`schema` or null (a value Redis cannot tell, or that does not apply)."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An object with exactly these keys (the `optional` ones may be missing)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def document(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A command's document: `schema_version`, then these keys."""
    schema = obj({"schema_version": {"const": SCHEMA_VERSION}, **required}, optional)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


MESSAGE_FIELDS: Schema = {
    "topic": NAME, "queue_id": INT, "offset": OFFSET, "msg_id": MSG_ID, "tag": null(STR),
    "keys": array(STR), "properties": {"type": "object", "additionalProperties": STR},
    "body_type": enum("str", "json", "bytes"), "body": {}, "born_at": TIME, "stored_at": TIME,
}  # fmt: skip
MESSAGE_EXTRA: Schema = {
    "group": null(NAME), "delivery_count": INT, "error": STR,
    "raw": {"type": "object", "additionalProperties": STR},
}  # fmt: skip
MESSAGE = obj(MESSAGE_FIELDS, MESSAGE_EXTRA)
"""A stored or consumed message (`error` and `raw` only for an entry that does not decode)."""

RETENTION = {
    "retention_seconds": null(NUM),
    "max_len": null(INT),
    "max_age_seconds": null(NUM),
    "dlq_retention_seconds": null(NUM),
}
LETTER = obj(
    {
        "topic": NAME, "group": NAME, "queue_id": INT, "id": OFFSET, "msg_id": null(MSG_ID),
        "reason": STR, "error": STR, "attempts": INT, "first_failure_at": null(TIME),
        "last_failure_at": null(TIME), "offset": STR, "lost": BOOL, "message": null(MESSAGE),
    }
)  # fmt: skip
PENDING_TX = obj(
    {
        "topic": NAME, "queue_id": INT, "msg_id": MSG_ID, "group": null(NAME), "checks": INT,
        "prepared_at": null(TIME), "next_check_at": null(TIME), "delay_seconds": null(NUM),
        "deliver_at": null(TIME), "message": null(MESSAGE), "error": null(STR),
    }
)  # fmt: skip
DISCARDED_TX = obj(
    {
        "topic": NAME, "queue_id": INT, "id": OFFSET, "msg_id": MSG_ID, "group": null(NAME),
        "checks": INT, "prepared_at": null(TIME), "discarded_at": null(TIME),
        "reason": null(STR), "message": null(MESSAGE), "error": null(STR),
    }
)  # fmt: skip
QUEUE_PROGRESS = obj(
    {
        "queue_id": INT, "length": INT, "last_id": null(OFFSET), "last_delivered_id": OFFSET,
        "lag": null(INT), "pending": INT, "oldest_pending_id": null(OFFSET),
        "oldest_pending_age_seconds": null(NUM), "consumers": INT, "dead_consumers": INT,
        "dlq_length": INT, "retry_waiting": INT,
    }
)  # fmt: skip
BENCH = {"type": "object", "required": ["schema_version"], "properties": {
    "schema_version": {"const": SCHEMA_VERSION}}}  # fmt: skip
"""A benchmark summary (its figures vary by mode; see `rmq bench --help`)."""

# fmt: off
SCHEMAS: dict[str, Schema] = {
    "version": document(
        {
            "rmq": STR,
            "python": STR,
            "server": null(obj({"name": STR, "version": STR, "mode": STR, "url": STR})),
        }
    ),
    "doctor": document(
        {
            "healthy": BOOL,
            "warnings": array(STR),
            "nodes": array(
                obj(
                    {
                        "node": STR,
                        "server": enum("redis", "valkey"),
                        "version": STR,
                        "mode": STR,
                        "used_memory_bytes": null(INT),
                        "maxmemory_bytes": null(INT),
                        "maxmemory_policy": null(STR),
                        "aof_enabled": null(BOOL),
                        "warnings": array(STR),
                    }
                )
            ),
            "topics": array(
                obj(
                    {
                        "topic": NAME,
                        "queues": array(obj({"queue_id": INT, "slot": INT, "node": STR})),
                    }
                )
            ),
        }
    ),
    "topic create": document({"topic": NAME, "queues": INT, "created": BOOL, **RETENTION}),
    "topic update": document({"topic": NAME, "queues": INT, "queues_added": INT, **RETENTION}),
    "topic delete": document({"topic": NAME, "deleted": BOOL, "keys_removed": INT}),
    "topic list": document(
        {"topics": array(obj({"name": NAME, "queues": INT, "created_at": null(TIME)}))}
    ),
    "topic status": document(
        {
            "topic": NAME,
            "created_at": null(TIME),
            "groups": array(NAME),
            "length": INT,
            "queues": array(
                obj(
                    {
                        "queue_id": INT,
                        "length": INT,
                        "first_id": null(OFFSET),
                        "last_id": null(OFFSET),
                        "delayed": INT,
                        "half": INT,
                    }
                )
            ),
        },
        RETENTION,
    ),
    "topic trim": document(
        {
            "topic": NAME,
            "dry_run": BOOL,
            **RETENTION,
            "groups": array(NAME),
            "removed": INT,
            "removed_unacked": INT,
            "streams": array(
                obj(
                    {
                        "queue_id": INT,
                        "stream": {"type": "string", "pattern": r"^(queue|retry:.+)$"},
                        "removed": INT,
                        "removed_unacked": INT,
                        "kept": INT,
                        "bound": null(OFFSET),
                        "held_by": null(STR),
                    }
                )
            ),
        }
    ),
    "group list": document(
        {
            "groups": array(
                obj(
                    {
                        "topic": NAME,
                        "group": NAME,
                        "lag": null(INT),
                        "pending": INT,
                        "consumers": INT,
                        "oldest_pending_age_seconds": null(NUM),
                        "dlq_length": INT,
                    }
                )
            )
        }
    ),
    "group progress": document(
        {
            "topic": NAME,
            "group": NAME,
            "lag": null(INT),
            "pending": INT,
            "oldest_pending_age_seconds": null(NUM),
            "dlq_length": INT,
            "queues": array(QUEUE_PROGRESS),
        }
    ),
    "group consumers": document(
        {
            "topic": NAME,
            "group": NAME,
            "consumers": array(
                obj(
                    {
                        "name": STR,
                        "pending": INT,
                        "idle_seconds": NUM,
                        "queues": array(INT),
                        "state": enum("live", "dead"),
                    }
                )
            ),
        }
    ),
    "group delete": document({"topic": NAME, "group": NAME, "deleted": BOOL, "queues": INT}),
    "group reset-offset": document(
        {
            "topic": NAME,
            "group": NAME,
            "to": STR,
            "queues": array(
                obj({"queue_id": INT, "last_delivered_id": OFFSET, "entries_read": null(INT)})
            ),
        }
    ),
    "message show": document(MESSAGE_FIELDS, MESSAGE_EXTRA),
    "message print": document({"topic": NAME, "messages": array(MESSAGE)}),
    "message query": document({"topic": NAME, "messages": array(MESSAGE)}),
    "send": document(
        {
            "status": enum("send_ok"),
            "msg_id": MSG_ID,
            "topic": NAME,
            "queue_id": INT,
            "offset": null(OFFSET),
            "deliver_at": null(TIME),
        }
    ),
    "consume": document(MESSAGE_FIELDS, MESSAGE_EXTRA),
    "dlq count": document(
        {
            "topic": NAME,
            "group": NAME,
            "total": INT,
            "queues": array(obj({"queue_id": INT, "count": INT})),
        }
    ),
    "dlq list": document({"topic": NAME, "group": NAME, "dead_letters": array(LETTER)}),
    "dlq show": document({"topic": NAME, "group": NAME, "dead_letters": array(LETTER)}),
    "dlq replay": document(
        {
            "topic": NAME,
            "group": NAME,
            "dry_run": BOOL,
            "to": enum("group", "topic"),
            "replayed": array(LETTER),
        }
    ),
    "dlq purge": document({"topic": NAME, "group": NAME, "dry_run": BOOL, "purged": INT}),
    "transaction list": document(
        {
            "topic": NAME,
            "group": null(NAME),
            "discarded": BOOL,
            "transactions": {"anyOf": [array(PENDING_TX), array(DISCARDED_TX)]},
        }
    ),
    "transaction count": document(
        {
            "topic": NAME,
            "group": null(NAME),
            "pending": INT,
            "discarded": null(INT),
            "queues": array(obj({"queue_id": INT, "pending": INT, "discarded": null(INT)})),
        }
    ),
    "worker check": document(
        {"app": STR, "host": STR, "healthy": BOOL, "alive": array(STR), "problem": null(STR)}
    ),
    "bench produce": BENCH,
    "bench consume": BENCH,
    "bench e2e": BENCH,
    "bench delay": BENCH,
}
# fmt: on


def schema_for(command: str) -> Schema:
    """The schema of `command` ("topic status"); raises KeyError for a command without one."""
    return SCHEMAS[" ".join(command.split())]
