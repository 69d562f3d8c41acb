"""`rmq send` (mqadmin sendMessage), also delayed (`--delay 30s`, `--delay-level 3`)."""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any

import orjson
import typer

from .options import EXIT_USAGE, JsonOption, TopicArg, parse_duration, parse_properties
from .output import jsonable
from .runtime import fail, output, run_admin


class BodyType(enum.StrEnum):
    STR = "str"
    JSON = "json"
    BYTES = "bytes"


def _body(text: str | None, kind: BodyType) -> Any:
    if text is None and sys.stdin.isatty():
        fail("give a BODY, or pipe one on standard input (or pass - to type it)", EXIT_USAGE)
    if text is None or text == "-":
        raw = typer.get_binary_stream("stdin").read()
        if kind is BodyType.BYTES:
            return raw
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            fail("stdin is not UTF-8 text: use --type bytes", EXIT_USAGE)
    if kind is BodyType.JSON:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            fail(f"the body is not JSON: {exc}", EXIT_USAGE)
    return text.encode() if kind is BodyType.BYTES else text


def send(
    ctx: typer.Context,
    topic: TopicArg,
    body: Annotated[
        str | None,
        typer.Argument(help="The body; '-' or nothing reads standard input.", show_default=False),
    ] = None,
    body_type: Annotated[
        BodyType, typer.Option("--type", help="Send the body as text, parsed JSON or raw bytes.")
    ] = BodyType.STR,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="The message tag.")] = None,
    keys: Annotated[
        list[str] | None, typer.Option("--key", "-k", help="A key (repeat for several).")
    ] = None,
    properties: Annotated[
        list[str] | None,
        typer.Option("--property", "-p", help="A property name=value (repeat for several)."),
    ] = None,
    sharding_key: Annotated[
        str | None,
        typer.Option(
            "--sharding-key", help="Messages with the same sharding key keep their order."
        ),
    ] = None,
    delay: Annotated[
        str | None,
        typer.Option("--delay", help="Deliver later: 500ms, 30s, 5m, 2h, 1d (RocketMQ timer)."),
    ] = None,
    delay_level: Annotated[
        int | None,
        typer.Option("--delay-level", min=1, max=18, help="RocketMQ delay level 1..18."),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print only the msg_id (for scripts: id=$(rmq send ...))."
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Send one message and print where it was stored (or when it will be)."""
    payload = _body(body, body_type)
    props = parse_properties(properties)
    seconds = parse_duration(delay, "--delay") if delay is not None else None
    result = run_admin(
        ctx,
        lambda admin: admin.send(
            topic, payload, tag=tag, keys=keys, properties=props, sharding_key=sharding_key,
            delay=seconds, delay_level=delay_level,
        ),
    )  # fmt: skip
    out = output(ctx, json)
    if quiet and not out.json:
        out.line(result.msg_id)
    elif out.json:
        out.document(
            {
                "status": jsonable(result.status), "msg_id": result.msg_id, "topic": result.topic,
                "queue_id": result.queue_id, "offset": result.offset or None,
                "deliver_at": jsonable(result.deliver_at),
            }
        )  # fmt: skip
    elif result.deliver_at is not None:
        when = result.deliver_at.isoformat()
        out.line(f"scheduled {result.msg_id} for {result.topic}[{result.queue_id}] at {when}")
    else:
        out.line(f"sent {result.msg_id} to {result.topic}[{result.queue_id}] at {result.offset}")
