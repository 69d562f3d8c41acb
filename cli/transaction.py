"""`rmq transaction list|count`: transactional half messages nobody resolved yet, and those
discarded after too many check-backs (read-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from rmq.transaction import DiscardedTransaction, PendingTransaction

from .options import EXIT_USAGE, JsonOption, TopicArg
from .output import Output, jsonable, message_doc, short
from .runtime import fail, output, run_admin

app = typer.Typer(
    help="Transactional half messages: pending and discarded (read-only).", no_args_is_help=True
)

ProducerGroupOption = Annotated[
    str | None,
    typer.Option(
        "--group", "-g", help="Only this producer group's transactions.", show_default=False
    ),
]


def pending_doc(t: PendingTransaction) -> dict[str, Any]:
    """The JSON of one pending half message (stable keys)."""
    return {
        "topic": t.topic,
        "queue_id": t.queue_id,
        "msg_id": t.msg_id,
        "group": t.group,
        "checks": t.checks,
        "prepared_at": jsonable(t.prepared_at),
        "next_check_at": jsonable(t.next_check_at),
        "delay_seconds": t.delay_seconds,
        "deliver_at": jsonable(t.deliver_at),
        "message": None if t.message is None else message_doc(t.message),
        "error": t.error,
    }


def discarded_doc(t: DiscardedTransaction) -> dict[str, Any]:
    """The JSON of one discarded transaction (stable keys)."""
    return {
        "topic": t.topic,
        "queue_id": t.queue_id,
        "id": t.id,
        "msg_id": t.msg_id,
        "group": t.group,
        "checks": t.checks,
        "prepared_at": jsonable(t.prepared_at),
        "discarded_at": jsonable(t.discarded_at),
        "reason": t.reason,
        "message": None if t.message is None else message_doc(t.message),
        "error": t.error,
    }


def _time(moment: datetime | None) -> str | None:
    """A time for a table: ISO 8601 UTC to the ms (the JSON has the full value)."""
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def _tag_body(t: PendingTransaction | DiscardedTransaction) -> tuple[str | None, str]:
    if t.message is None:
        return None, "<undecodable>"
    return t.message.tag, short(t.message.body, 30)


@app.command("list")
def list_(
    ctx: typer.Context,
    topic: TopicArg,
    group: ProducerGroupOption = None,
    discarded: Annotated[
        bool,
        typer.Option(
            "--discarded",
            help="The group's transactions rolled back after the most check-backs (needs --group).",
        ),
    ] = False,
    queue: Annotated[int | None, typer.Option("--queue", min=0, help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    json: JsonOption = False,
) -> None:
    """Half messages nobody committed or rolled back yet, the next due for a check first; with
    --discarded, the ones given up on, oldest first."""
    out = output(ctx, json)
    if discarded:
        if group is None:
            fail("--discarded needs --group: discarded transactions are kept per producer group",
                 EXIT_USAGE)  # fmt: skip
        _list_discarded(ctx, out, topic, group, queue, limit)
        return
    halves = run_admin(
        ctx, lambda admin: admin.pending_transactions(topic, group=group, queue=queue, limit=limit)
    )
    if out.json:
        out.document({"topic": topic, "group": group, "discarded": False,
                      "transactions": [pending_doc(t) for t in halves]})  # fmt: skip
        return
    of = f" of {group}" if group else ""
    out.table(
        f"{topic}: {len(halves)} pending transaction(s){of}",
        ["QUEUE", "MSG ID", "GROUP", "CHECKS", "PREPARED", "NEXT CHECK", "TAG", "BODY"],
        [(t.queue_id, t.msg_id, t.group, t.checks, _time(t.prepared_at), _time(t.next_check_at),
          *_tag_body(t)) for t in halves],
    )  # fmt: skip


def _list_discarded(
    ctx: typer.Context, out: Output, topic: str, group: str, queue: int | None, limit: int
) -> None:
    gone = run_admin(
        ctx, lambda admin: admin.discarded_transactions(topic, group, queue=queue, limit=limit)
    )
    if out.json:
        out.document({"topic": topic, "group": group, "discarded": True,
                      "transactions": [discarded_doc(t) for t in gone]})  # fmt: skip
        return
    out.table(
        f"{topic}: {len(gone)} discarded transaction(s) of {group}",
        ["QUEUE", "MSG ID", "CHECKS", "PREPARED", "DISCARDED", "REASON", "TAG", "BODY"],
        [(t.queue_id, t.msg_id, t.checks, _time(t.prepared_at), _time(t.discarded_at), t.reason,
          *_tag_body(t)) for t in gone],
    )  # fmt: skip


@app.command("count")
def count(
    ctx: typer.Context, topic: TopicArg, group: ProducerGroupOption = None, json: JsonOption = False
) -> None:
    """Pending half messages per queue; with --group, also its discarded transactions."""
    rows = run_admin(ctx, lambda admin: admin.transaction_counts(topic, group))
    pending = sum(r.pending for r in rows)
    discarded = None if group is None else sum(r.discarded or 0 for r in rows)
    out = output(ctx, json)
    if out.json:
        out.document({"topic": topic, "group": group, "pending": pending, "discarded": discarded,
                      "queues": [jsonable(r) for r in rows]})  # fmt: skip
        return
    title = f"{topic}: {pending} pending transaction(s)"
    if group is not None:
        title += f" of {group}, {discarded} discarded"
    columns = ["QUEUE", "PENDING"] + ([] if group is None else ["DISCARDED"])
    out.table(
        title,
        columns,
        [(r.queue_id, r.pending) + (() if group is None else (r.discarded,)) for r in rows],
    )
