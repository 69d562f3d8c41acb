"""`rmq doctor`: check the server (memory policy, AOF, version) and show where queues live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from rmq.admin import Admin
from rmq.doctor import NodeReport, QueueRoute, diagnose, route

from .complete import complete_topic
from .options import JsonOption
from .runtime import output, run_admin


@dataclass(frozen=True, slots=True)
class _Checked:
    nodes: list[NodeReport]
    routes: dict[str, list[QueueRoute]]


def _size(value: int | None) -> str:
    if value is None:
        return "no limit"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)  # pragma: no cover


def doctor(
    ctx: typer.Context,
    topics: Annotated[
        list[str] | None,
        typer.Argument(
            help="Show which node and slot each queue of these topics lives on (on a cluster, "
            "every topic by default).",
            autocompletion=complete_topic,
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Check the server rmq uses: warn (exit 0) about what loses messages.

    Warns when maxmemory-policy is not noeviction (a full Redis evicts streams), when AOF is
    off (a restart loses recent messages) and when Redis is older than 7.0; prints each node's
    version and memory and, on Redis Cluster, the node and slot of every queue (topicRoute).
    Workers log the same warnings when they start.
    """

    async def check(admin: Admin) -> _Checked:
        nodes = await diagnose(admin.ctx)
        names = list(topics or [])
        if not names and admin.ctx.conn.cluster:
            names = [t.name for t in await admin.topics()]
        routes = {name: route(admin.ctx, await admin.topic(name)) for name in names}
        return _Checked(nodes, routes)

    checked = run_admin(ctx, check)
    out = output(ctx, json)
    warnings = [w for n in checked.nodes for w in n.warnings]
    if out.json:
        out.document(
            {
                "healthy": not warnings,
                "warnings": warnings,
                "nodes": checked.nodes,
                "topics": [
                    {"topic": name, "queues": queues} for name, queues in checked.routes.items()
                ],
            }
        )
        return
    for node in checked.nodes:
        aof = {True: "on", False: "off", None: "unknown"}[node.aof_enabled]
        out.line(
            f"{node.node}: {node.server} {node.version} ({node.mode}), memory "
            f"{_size(node.used_memory_bytes)} of {_size(node.maxmemory_bytes)}, "
            f"maxmemory-policy {node.maxmemory_policy or 'unknown'}, AOF {aof}"
        )
    for name, queues in checked.routes.items():
        out.table(
            f"topic {name}",
            ["QUEUE", "SLOT", "NODE"],
            [(q.queue_id, q.slot, q.node) for q in queues],
        )
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    if not warnings:
        out.line("ok: nothing here loses messages")
