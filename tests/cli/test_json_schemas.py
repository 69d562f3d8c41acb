"""Every --json document follows its command's JSON Schema (cli/schemas.py) and the conventions:
schema_version first, per-queue lists of objects with queue_id, topic/group named, lower-case
enums, null for unknown, no raw wire fields."""

from __future__ import annotations

from typing import Any

import anyio
import jsonschema
import orjson
import typer.main

from rmq.cli.main import app as cli_app
from rmq.cli.output import SCHEMA_VERSION
from rmq.cli.schemas import SCHEMAS
from tests.cli.conftest import Invoke
from tests.cli.test_dlq import dead_letter


def json_commands() -> set[str]:
    """Every leaf command with a --json option (and `version`, the root's --version --json)."""
    found = {"version"}

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
            return
        if any("--json" in p.opts for p in command.params):
            found.add(" ".join(path))

    walk(typer.main.get_command(cli_app), [])
    return found


def test_every_json_command_has_a_schema() -> None:
    assert json_commands() == set(SCHEMAS)
    for schema in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


class Checked:
    """Runs commands with --json and validates each document against its schema."""

    def __init__(self, cli: Invoke) -> None:
        self.cli = cli
        self.seen: set[str] = set()

    def __call__(self, command: str, *args: str, lines: bool = False) -> Any:
        words = command.split()
        argv = ["--version", "--json"] if command == "version" else [*words, *args, "--json"]
        out = self.cli(*argv).stdout
        docs = [orjson.loads(x) for x in out.splitlines() if x] if lines else [orjson.loads(out)]
        for doc in docs:
            assert next(iter(doc)) == "schema_version" and doc["schema_version"] == SCHEMA_VERSION
            jsonschema.validate(doc, SCHEMAS[command], format_checker=jsonschema.FormatChecker())
            _conventions(doc)
        self.seen.add(command)
        return docs if lines else docs[0]


def _conventions(value: Any, key: str = "") -> None:
    """No "" for unknown, no dict keyed by queue numbers, upper-case enum values only in text."""
    if isinstance(value, dict):
        assert not any(k.isdigit() for k in value), f"{key}: an object keyed by queue ids"
        for k, v in value.items():
            if k not in ("body", "properties", "raw"):
                _conventions(v, k)
    elif isinstance(value, list):
        for item in value:
            _conventions(item, key)
    elif isinstance(value, str) and key in ("status", "state", "reason", "to", "body_type"):
        assert value == value.lower(), f"{key}={value!r} is not lower-case"
    elif key in ("offset", "id", "last_id", "first_id", "deliver_at"):
        assert value != "", f"{key} is '' instead of null"


def test_documents_match_their_schemas(
    cli: Invoke, redis_url: str, namespace: str, env: dict[str, str]
) -> None:
    check = Checked(cli)
    check("version")
    check("doctor")
    check("topic create", "orders", "-q", "2")
    check("topic update", "orders", "--retention", "3d")
    check("topic update", "orders", "--queues", "3")
    check("topic list")
    sent = check("send", "orders", '{"id": 1}', "--type", "json", "--key", "k1", "-p", "a=b")
    delayed = check("send", "orders", "later", "--delay", "1h")
    assert delayed["offset"] is None and delayed["deliver_at"]
    check("consume", "orders", "-g", "billing", "--from", "first", "-n", "1", "-w", "2",
          lines=True)  # fmt: skip
    check("send", "orders", b"\xff".decode("latin-1"), "--type", "bytes")
    check("topic status", "orders")
    check("topic trim", "orders", "--dry-run")
    check("group list")
    check("group progress", "orders", "billing")
    check("group consumers", "orders", "billing")
    check("group reset-offset", "orders", "billing", "--to-first", "--yes")
    check("message show", "orders", sent["msg_id"])
    check("message print", "orders")
    check("message query", "orders", "--key", "k1")
    check("transaction count", "orders")
    check("transaction list", "orders")
    check("transaction list", "orders", "-g", "pg", "--discarded")
    cli("worker", "check", "workers.orders:app", "--json", code=1)
    anyio.run(dead_letter, redis_url, namespace, ["a", "b"])
    check("dlq count", "orders", "billing")
    letters = check("dlq list", "orders", "billing")["dead_letters"]
    assert letters and all("fields" not in x for x in letters)  # no raw wire fields
    first = f"{letters[0]['queue_id']}/{letters[0]['id']}"
    check("dlq show", "orders", "billing", first)
    check("dlq replay", "orders", "billing", first, "--dry-run")
    check("dlq purge", "orders", "billing", "--all", "--dry-run")
    check("group delete", "orders", "billing", "--yes")
    check("topic delete", "orders", "--yes")
    untested = set(SCHEMAS) - check.seen - {"worker check"} - {c for c in SCHEMAS if "bench" in c}
    assert not untested, untested
