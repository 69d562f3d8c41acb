"""`rmq message show|print|query` (mqadmin queryMsgById, printMsg, queryMsgByKey)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from rmq.admin import StoredMessage

from .options import (
    EXIT_FAILURE,
    EXIT_USAGE,
    JsonOption,
    TopicArg,
    check_message_ref,
    check_offset,
    parse_bound,
)
from .output import Output, message_doc, short
from .runtime import fail, output, run_admin

app = typer.Typer(help="Find and print stored messages.", no_args_is_help=True)

QueueOption = Annotated[
    int | None, typer.Option("--queue", "-q", min=0, help="Only this queue.", show_default=False)
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from", help="Start: an offset (<ms>-<seq>) or a time (ISO 8601, epoch ms, 15m).",
        show_default=False,
    ),
]  # fmt: skip
ToOption = Annotated[
    str | None,
    typer.Option("--to", help="End (inclusive), like --from.", show_default=False),
]


def print_messages(out: Output, topic: str, messages: Sequence[StoredMessage]) -> None:
    if out.json:
        out.document({"topic": topic, "messages": [message_doc(m) for m in messages]})
        return
    out.table(
        None,
        ["QUEUE", "OFFSET", "MSG ID", "TAG", "KEYS", "BODY"],
        [
            (m.queue_id, m.offset, m.msg_id, m.tag, " ".join(m.keys),
             f"<undecodable: {m.error}>" if m.error else short(m.body))
            for m in messages
        ],
    )  # fmt: skip


@app.command("show")
def show(
    ctx: typer.Context,
    topic: TopicArg,
    msg_id: Annotated[
        str | None,
        typer.Argument(help="The msg_id (or an entry id).", show_default=False),
    ] = None,
    queue: QueueOption = None,
    offset: Annotated[
        str | None,
        typer.Option("--offset", help="The offset (entry id) in --queue.", show_default=False),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Show one message, by msg_id or by --queue and --offset."""
    if (msg_id is None) == (offset is None) or (offset is not None and queue is None):
        fail("give a MSG_ID, or --queue and --offset", EXIT_USAGE)
    if offset is not None and queue is not None:
        q, where = queue, check_offset(offset)
        found = run_admin(ctx, lambda admin: admin.message_at(topic, q, where))
    else:
        assert msg_id is not None
        wanted = check_message_ref(msg_id)
        found = run_admin(ctx, lambda admin: admin.find_message(topic, wanted))
    if found is None:
        fail(f"no message {msg_id or offset} in topic {topic}", EXIT_FAILURE)
    out = output(ctx, json)
    doc = message_doc(found)
    if out.json:
        out.document(doc)
        return
    for key, value in doc.items():
        if key == "keys":
            shown = " ".join(value)
        elif key == "body":
            shown = found.body if isinstance(found.body, str) else short(found.body, 100_000)
        elif isinstance(value, dict):
            shown = " ".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = "-" if value is None else str(value)
        out.line(f"{key + ':':<12} {shown}")


@app.command("print")
def print_(
    ctx: typer.Context,
    topic: TopicArg,
    queue: QueueOption = None,
    start: FromOption = None,
    end: ToOption = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="At most this many.")] = 20,
    json: JsonOption = False,
) -> None:
    """Print stored messages, oldest first, of one queue or all."""
    lo, hi = parse_bound(start, "--from"), parse_bound(end, "--to")
    messages = run_admin(
        ctx, lambda admin: admin.messages(topic, queue=queue, start=lo, end=hi, count=count)
    )
    print_messages(output(ctx, json), topic, messages)


@app.command("query")
def query(
    ctx: typer.Context,
    topic: TopicArg,
    key: Annotated[str, typer.Option("--key", "-k", help="A message key.", show_default=False)],
    start: FromOption = None,
    end: ToOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 32,
    json: JsonOption = False,
) -> None:
    """Find messages by key (queryMsgByKey).

    There is no key index: the topic's streams are scanned server-side in bounded slices (1,000
    entries per call); narrow large topics with --from and --to.
    """
    lo, hi = parse_bound(start, "--from"), parse_bound(end, "--to")
    messages = run_admin(
        ctx, lambda admin: admin.query_key(topic, key, start=lo, end=hi, limit=limit)
    )
    print_messages(output(ctx, json), topic, messages)
