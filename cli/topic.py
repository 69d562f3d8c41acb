"""`rmq topic create|delete|list|status` (mqadmin updateTopic, deleteTopic, topicList,
topicStatus)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from rmq.admin import Admin, TopicStatus

from .options import JsonOption, TopicArg, YesOption
from .runtime import confirm, output, run_admin

app = typer.Typer(help="Create, list, inspect and delete topics.", no_args_is_help=True)


def _created(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat() if ms else None


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
    json: JsonOption = False,
) -> None:
    """Create a topic with N queues (nothing happens if it exists with the same count)."""
    info, created = run_admin(ctx, lambda admin: admin.create_topic(topic, queues))
    out = output(ctx, json)
    if out.json:
        out.document({"topic": info.name, "queues": info.queues, "created": created})
    else:
        verb = "created" if created else "already exists:"
        out.line(f"topic {info.name} {verb} {info.queues} queues")


@app.command("delete")
def delete(
    ctx: typer.Context, topic: TopicArg, yes: YesOption = False, json: JsonOption = False
) -> None:
    """Delete a topic with all its messages, groups' state and dead letters."""
    confirm(f"Delete topic {topic!r} with every message, group state and dead letter?", yes)
    removed = run_admin(ctx, lambda admin: admin.delete_topic(topic))
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
        + (", ".join(result.groups) or "none"),
        ["QUEUE", "LENGTH", "FIRST ID", "LAST ID", "DELAYED"],
        [(q.queue_id, q.length, q.first_id, q.last_id, q.delayed) for q in result.queues],
    )
