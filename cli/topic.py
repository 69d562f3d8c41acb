"""`rmq topic create|update|delete|list|status|trim` (mqadmin updateTopic, deleteTopic, topicList,
topicStatus; trim runs the retention now)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from rmq.admin import Admin, TopicStatus, TopicTrim
from rmq.retention import Policy
from rmq.topics import TopicInfo

from .options import JsonOption, TopicArg, YesOption, bad, parse_duration
from .runtime import confirm, output, run_admin

app = typer.Typer(help="Create, list, inspect and delete topics.", no_args_is_help=True)


def _created(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat() if ms else None


RetentionOption = Annotated[
    str | None,
    typer.Option(
        "--retention",
        help="Keep acknowledged messages this long: 500ms, 30s, 5m, 2h, 3d "
        "(default: RMQ_RETENTION, 72h; 'default' resets).",
        show_default=False,
    ),
]
MaxLenOption = Annotated[
    str | None,
    typer.Option(
        "--max-len",
        help="Hard cap: most messages per queue, acknowledged or not (0 or 'off': no cap; "
        "default: RMQ_RETENTION_MAX_LEN; 'default' resets).",
        show_default=False,
    ),
]
MaxAgeOption = Annotated[
    str | None,
    typer.Option(
        "--max-age",
        help="Hard cap: remove messages older than this, acknowledged or not (0 or 'off': no "
        "cap; default: RMQ_RETENTION_MAX_AGE; 'default' resets).",
        show_default=False,
    ),
]

DlqRetentionOption = Annotated[
    str | None,
    typer.Option(
        "--dlq-retention",
        help="Delete dead letters older than this (0 or 'off': keep them until purged; "
        "default: RMQ_DLQ_RETENTION, off; 'default' resets).",
        show_default=False,
    ),
]


def _retention_changes(
    retention: str | None, max_len: str | None, max_age: str | None, dlq: str | None = None
) -> dict[str, float | int | None]:
    """The topic retention fields the options set ('default' = None: back to the setting)."""
    changes: dict[str, float | int | None] = {}
    if dlq is not None:
        if dlq in ("default", "off"):
            changes["dlq_retention"] = None if dlq == "default" else 0.0
        else:
            changes["dlq_retention"] = parse_duration(dlq, "--dlq-retention")
    if retention is not None:
        changes["retention"] = (
            None if retention == "default" else parse_duration(retention, "--retention")
        )
    if max_len is not None:
        if max_len in ("default", "off"):
            changes["retention_max_len"] = None if max_len == "default" else 0
        elif max_len.isdigit():
            changes["retention_max_len"] = int(max_len)
        else:
            raise bad(f"{max_len!r}: a number, 'off' or 'default'", "--max-len")
    if max_age is not None:
        if max_age in ("default", "off"):
            changes["retention_max_age"] = None if max_age == "default" else 0.0
        else:
            changes["retention_max_age"] = parse_duration(max_age, "--max-age")
    return changes


def _policy_doc(rules: Policy) -> dict[str, float | int | None]:
    return {
        "retention_seconds": rules.retention,
        "max_len": rules.max_len,
        "max_age_seconds": rules.max_age,
        "dlq_retention_seconds": rules.dlq_retention,
    }


def _policy_text(rules: Policy) -> str:
    caps = []
    if rules.max_len:
        caps.append(f"max {rules.max_len} messages")
    if rules.max_age:
        caps.append(f"max age {_duration(rules.max_age)}")
    return (
        f"retention {_duration(rules.retention)}"
        + (f", hard cap: {', '.join(caps)}" if caps else "")
        + (f", dead letters {_duration(rules.dlq_retention)}" if rules.dlq_retention else "")
    )


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _overrides(info: TopicInfo) -> dict[str, float | int | None]:
    return {
        "retention_seconds": info.retention,
        "max_len": info.retention_max_len,
        "max_age_seconds": info.retention_max_age,
        "dlq_retention_seconds": info.dlq_retention,
    }


@app.command("create")
def create(
    ctx: typer.Context,
    topic: TopicArg,
    queues: Annotated[
        int | None,
        typer.Option(
            "--queues", "-q", min=1, max=1024, help="Queues (default: RMQ_DEFAULT_QUEUES)."
        ),
    ] = None,
    retention: RetentionOption = None,
    max_len: MaxLenOption = None,
    max_age: MaxAgeOption = None,
    dlq_retention: DlqRetentionOption = None,
    json: JsonOption = False,
) -> None:
    """Create a topic with N queues (if it exists with the same count, only the retention
    options given are applied)."""
    changes = _retention_changes(retention, max_len, max_age, dlq_retention)
    info, created = run_admin(ctx, lambda admin: admin.create_topic(topic, queues, **changes))
    out = output(ctx, json)
    if out.json:
        out.document(
            {"topic": info.name, "queues": info.queues, "created": created, **_overrides(info)}
        )
    else:
        verb = "created" if created else "already exists:"
        out.line(f"topic {info.name} {verb} {info.queues} queues")


@app.command("update")
def update(
    ctx: typer.Context,
    topic: TopicArg,
    queues: Annotated[
        int | None,
        typer.Option(
            "--queues", "-q", min=1, max=1024,
            help="Grow the topic to this many queues (never fewer). Its groups are created on "
            "the new queues; restart its workers so they read them. Sharding keys move: order "
            "per key holds before and after, not across the change.",
            show_default=False,
        ),
    ] = None,
    retention: RetentionOption = None,
    max_len: MaxLenOption = None,
    max_age: MaxAgeOption = None,
    dlq_retention: DlqRetentionOption = None,
    json: JsonOption = False,
) -> None:  # fmt: skip
    """Grow a topic's queues or change its retention (running workers follow at their next
    trim)."""
    changes = _retention_changes(retention, max_len, max_age, dlq_retention)
    if not changes and queues is None:
        raise bad("give --queues, --retention, --max-len, --max-age or --dlq-retention")

    async def update_(admin: Admin) -> tuple[TopicInfo, int]:
        added = 0
        if queues is not None:
            _, added = await admin.grow_topic(topic, queues)
        info = await admin.update_topic(topic, **changes) if changes else await admin.topic(topic)
        return info, added

    info, added = run_admin(ctx, update_)
    out = output(ctx, json)
    if out.json:
        out.document(
            {"topic": info.name, "queues": info.queues, "queues_added": added, **_overrides(info)}
        )
        return
    if queues is not None:
        if added:
            out.line(f"topic {info.name} grown to {info.queues} queues (+{added}): restart its "
                     "workers so they read the new ones")  # fmt: skip
        else:
            out.line(f"topic {info.name} has {info.queues} queues already")
    if changes:
        shown = ", ".join(f"{k}={v}" for k, v in _overrides(info).items() if v is not None)
        out.line(f"topic {info.name} updated: {shown or 'retention from the settings'}")


@app.command("delete")
def delete(
    ctx: typer.Context, topic: TopicArg, yes: YesOption = False, json: JsonOption = False
) -> None:
    """Delete a topic with all its messages, groups' state and dead letters."""

    async def delete_(admin: Admin) -> int:
        await admin.topic(topic)  # a missing one is an error, before asking
        confirm(f"Delete topic {topic!r} with every message, group state and dead letter?", yes)
        return await admin.delete_topic(topic)

    removed = run_admin(ctx, delete_)
    out = output(ctx, json)
    if out.json:
        out.document({"topic": topic, "deleted": True, "keys_removed": removed})
    else:
        out.line(f"topic {topic} deleted ({removed} keys removed)")


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the topics of the namespace."""
    topics = run_admin(ctx, Admin.topics)
    out = output(ctx, json)
    if out.json:
        out.document(
            {
                "topics": [
                    {"name": t.name, "queues": t.queues, "created_at": _created(t.created_ms)}
                    for t in topics
                ]
            }
        )
        return
    out.table(
        None,
        ["TOPIC", "QUEUES", "CREATED"],
        [(t.name, t.queues, _created(t.created_ms)) for t in topics],
    )


@app.command("status")
def status(ctx: typer.Context, topic: TopicArg, json: JsonOption = False) -> None:
    """Per queue: length, first and last message id, delayed messages; the topic's groups."""
    result: TopicStatus = run_admin(ctx, lambda admin: admin.topic_status(topic))
    out = output(ctx, json)
    if out.json:
        out.document(
            {
                "topic": result.name,
                "created_at": _created(result.created_ms),
                "groups": result.groups,
                **(_policy_doc(result.retention) if result.retention else {}),
                "length": sum(q.length for q in result.queues),
                "queues": [
                    {
                        "queue_id": q.queue_id, "length": q.length, "first_id": q.first_id,
                        "last_id": q.last_id, "delayed": q.delayed, "half": q.half,
                    }
                    for q in result.queues
                ],
            }
        )  # fmt: skip
        return
    out.table(
        f"topic {result.name}: {len(result.queues)} queues, groups: "
        + (", ".join(result.groups) or "none")
        + (f"; {_policy_text(result.retention)}" if result.retention else ""),
        ["QUEUE", "LENGTH", "FIRST ID", "LAST ID", "DELAYED"],
        [(q.queue_id, q.length, q.first_id, q.last_id, q.delayed) for q in result.queues],
    )


@app.command("trim")
def trim(
    ctx: typer.Context,
    topic: TopicArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Apply the topic's retention now (workers do it every RMQ_TRIM_INTERVAL): remove what
    every group acknowledged and is older than the retention; unacknowledged messages stay
    unless a hard cap (--max-len/--max-age) is set."""
    result: TopicTrim = run_admin(ctx, lambda admin: admin.trim(topic, dry_run=dry_run))
    out = output(ctx, json)
    if out.json:
        out.document(
            {
                "topic": result.topic,
                "dry_run": result.dry_run,
                **_policy_doc(result.retention),
                "groups": result.groups,
                "removed": result.removed,
                "removed_unacked": result.removed_unacked,
                "streams": [
                    {
                        "queue_id": s.queue_id, "stream": s.stream, "removed": s.removed,
                        "removed_unacked": s.removed_unacked, "kept": s.kept, "bound": s.bound,
                        "held_by": s.held_by,
                    }
                    for s in result.streams
                ],
            }
        )  # fmt: skip
        return
    verb = "would remove" if result.dry_run else "removed"
    out.table(
        f"topic {result.topic}: {_policy_text(result.retention)}; {verb} {result.removed}"
        + (f" ({result.removed_unacked} unacknowledged)" if result.removed_unacked else ""),
        ["QUEUE", "STREAM", "REMOVED", "UNACKED", "KEPT", "BOUND", "HELD BY"],
        [
            (s.queue_id, s.stream, s.removed, s.removed_unacked, s.kept, s.bound, s.held_by)
            for s in result.streams
        ],
    )
