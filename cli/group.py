"""`rmq group list|progress|consumers|delete|reset-offset` (mqadmin consumerProgress,
consumerConnection, deleteSubGroup, resetOffsetByTime, skipAccumulatedMessage)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import typer

from rmq.admin import Admin, GroupProgress, QueueReset

from .complete import complete_topic
from .options import EXIT_USAGE, GroupArg, JsonOption, TopicArg, YesOption, parse_time
from .runtime import confirm, fail, output, run_admin

app = typer.Typer(help="Consumer groups: progress, consumers, offsets.", no_args_is_help=True)


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}s"


@app.command("list")
def list_(
    ctx: typer.Context,
    topic: Annotated[
        str | None,
        typer.Argument(help="Only this topic's groups.", autocompletion=complete_topic),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Every consumer group (of one topic, or of all), with lag, pending and consumers."""
    groups = run_admin(ctx, lambda admin: admin.groups(topic))
    out = output(ctx, json)
    if out.json:
        out.document({"groups": groups})
        return
    out.table(
        None,
        ["TOPIC", "GROUP", "LAG", "PENDING", "OLDEST PENDING", "CONSUMERS", "DLQ"],
        [
            (g.topic, g.group, g.lag, g.pending, _seconds(g.oldest_pending_age_seconds),
             g.consumers, g.dlq_length)
            for g in groups
        ],
    )  # fmt: skip


@app.command("progress")
def progress(
    ctx: typer.Context, topic: TopicArg, group: GroupArg, json: JsonOption = False
) -> None:
    """Per queue: last id, last delivered id, lag, pending, oldest pending age, consumers."""
    result: GroupProgress = run_admin(ctx, lambda admin: admin.group_progress(topic, group))
    out = output(ctx, json)
    if out.json:
        out.document(
            {
                "topic": result.topic, "group": result.group, "lag": result.lag,
                "pending": result.pending,
                "oldest_pending_age_seconds": result.oldest_pending_age_seconds,
                "dlq_length": result.dlq_length, "queues": result.queues,
            }
        )  # fmt: skip
        return
    lag = "unknown" if result.lag is None else result.lag
    out.table(
        f"{result.topic}/{result.group}: lag {lag}, pending {result.pending}",
        ["QUEUE", "LENGTH", "LAST ID", "LAST DELIVERED", "LAG", "PENDING", "OLDEST PENDING",
         "CONSUMERS", "DLQ"],
        [
            (q.queue_id, q.length, q.last_id, q.last_delivered_id, q.lag, q.pending,
             _seconds(q.oldest_pending_age_seconds), q.consumers, q.dlq_length)
            for q in result.queues
        ],
    )  # fmt: skip


@app.command("consumers")
def consumers(
    ctx: typer.Context, topic: TopicArg, group: GroupArg, json: JsonOption = False
) -> None:
    """The group's consumers (worker processes): live or dead, pending messages, idle time.

    A consumer is live while its process beats (every heartbeat_interval); a dead one (stopped
    or crashed) stays listed while it owns pending entries, which live consumers claim after
    the visibility timeout. A drained worker removes its own empty consumers.
    """
    rows = run_admin(ctx, lambda admin: admin.group_consumers(topic, group))
    out = output(ctx, json)
    if out.json:
        out.document({"topic": topic, "group": group, "consumers": rows})
        return
    live = sum(c.state == "live" for c in rows)
    out.table(
        f"{topic}/{group}: {live} live, {len(rows) - live} dead",
        ["CONSUMER", "STATE", "PENDING", "IDLE", "QUEUES"],
        [(c.name, c.state, c.pending, _seconds(c.idle_seconds), len(c.queues)) for c in rows],
    )


@app.command("delete")
def delete(
    ctx: typer.Context,
    topic: TopicArg,
    group: GroupArg,
    yes: YesOption = False,
    json: JsonOption = False,
) -> None:
    """Delete the group on every queue, with its pending list, retries and dead letters."""

    async def delete_(admin: Admin) -> int:
        await admin.require_group(topic, group)  # a missing one is an error, before asking
        confirm(
            f"Delete group {group!r} of {topic!r}? What it has not acknowledged is dropped for it.",
            yes,
        )
        return await admin.delete_group(topic, group)

    queues = run_admin(ctx, delete_)
    out = output(ctx, json)
    if out.json:
        out.document({"topic": topic, "group": group, "deleted": True, "queues": queues})
    else:
        out.line(f"group {group} deleted from {queues} queue(s) of {topic}")


@app.command("reset-offset")
def reset_offset(
    ctx: typer.Context,
    topic: TopicArg,
    group: GroupArg,
    to_time: Annotated[
        str | None,
        typer.Option(
            "--to-time",
            help="Deliver what was stored at or after this time: ISO 8601 (no offset = local), "
            "epoch ms, or a duration ago (15m, 2h).",
            show_default=False,
        ),
    ] = None,
    to_first: Annotated[
        bool, typer.Option("--to-first", help="Deliver everything stored again.")
    ] = False,
    to_last: Annotated[
        bool, typer.Option("--to-last", help="Skip everything stored (skipAccumulatedMessage).")
    ] = False,
    yes: YesOption = False,
    json: JsonOption = False,
) -> None:
    """Move the group's position on every queue (resetOffsetByTime).

    Running workers follow at once. Messages already pending stay pending: they are still
    delivered again or claimed.
    """
    chosen = [x for x in (to_time is not None, to_first, to_last) if x]
    if len(chosen) != 1:
        fail("give exactly one of --to-time, --to-first, --to-last", EXIT_USAGE)
    target: datetime | Literal["first", "last"]
    if to_time is not None:
        target = parse_time(to_time, option="--to-time")
        what = target.isoformat()
    else:
        target = "first" if to_first else "last"
        what = f"the {target} message"

    async def reset(admin: Admin) -> list[QueueReset]:
        await admin.require_group(topic, group)
        confirm(f"Reset group {group!r} of {topic!r} to {what}?", yes)
        return await admin.reset_offset(topic, group, target)

    resets = run_admin(ctx, reset)
    out = output(ctx, json)
    if out.json:
        out.document(
            {
                "topic": topic, "group": group,
                "to": target if isinstance(target, str) else target.isoformat(),
                "queues": resets,
            }
        )  # fmt: skip
        return
    out.table(
        f"{topic}/{group} reset to {what}",
        ["QUEUE", "LAST DELIVERED", "ENTRIES READ"],
        [(r.queue_id, r.last_delivered_id, r.entries_read) for r in resets],
    )
