"""`rmq consume` (mqadmin consumeMessage): print messages as a group, or tail without one."""

from __future__ import annotations

from contextlib import aclosing
from typing import Annotated, Literal

import anyio
import typer

from rmq.admin import Admin, StoredMessage
from rmq.errors import TopicNotFound
from rmq.message import Message

from .complete import complete_group
from .options import TopicArg, bad, parse_bound
from .output import Output, message_doc, short
from .runtime import output, run_admin


def _show(out: Output, msg: StoredMessage | Message) -> None:
    if out.json:
        out.json_line(message_doc(msg))
        return
    tag = f" tag={msg.tag}" if msg.tag else ""
    keys = f" keys={','.join(msg.keys)}" if msg.keys else ""
    body = short(msg.body, 200)
    out.line(f"{msg.topic}[{msg.queue_id}]@{msg.offset} {msg.msg_id}{tag}{keys} {body}")


async def _check_topic(admin: Admin, topic: str, create: bool) -> None:
    """A missing topic is an error (exit 1), unless `create`."""
    try:
        await admin.topic(topic)
    except TopicNotFound:
        if create:
            await admin.create_topic(topic)
            return
        raise TopicNotFound(
            f"topic {topic!r} does not exist: create it (rmq topic create {topic}), or pass "
            "--create (rmq topic list shows the topics)"
        ) from None


def consume(
    ctx: typer.Context,
    topic: TopicArg,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Consume (and acknowledge) as this group; without it, tail.",
            autocompletion=complete_group,
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count", "-n", min=1, help="Stop after this many (default 10 with --group)."
        ),
    ] = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            "-w",
            min=0,
            help="Stop after this many seconds (default 5 with --group; tail: until Ctrl-C).",
        ),
    ] = None,
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="Where a new group starts (first|last); when tailing: first, last, an offset or "
            "a time.",
        ),
    ] = "last",
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create the topic if it does not exist (else a missing topic is an error).",
        ),
    ] = False,
    json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line.", show_default=False)
    ] = False,
) -> None:
    """Print messages as a group (acknowledged), or tail a topic.

    With --group, messages are received as that group and each one is acknowledged after it is
    printed. A group that does not exist yet is created, durably (it then holds back the
    topic's retention until deleted): the command says so on stderr. Without --group, the topic
    is tailed and nothing is acknowledged.
    """
    out = output(ctx, json)
    if group is not None:
        if start not in ("first", "last"):
            raise bad("with --group, --from is first or last", "--from")
        begin: Literal["first", "last"] = "first" if start == "first" else "last"
        limit, seconds = count or 10, 5.0 if wait is None else wait
        wanted = group

        async def as_group(admin: Admin) -> int:
            await _check_topic(admin, topic, create)
            new = not await admin.group_exists(topic, wanted)
            shown = 0
            stream = admin.consume(topic, wanted, count=limit, wait=seconds, start=begin)
            try:
                async with aclosing(stream) as messages:
                    async for msg in messages:
                        _show(out, msg)
                        shown += 1
            finally:
                if new:
                    typer.echo(
                        f"note: created consumer group {wanted!r} on topic {topic!r} (from the "
                        f"{begin} message); it keeps the messages it has not acknowledged from "
                        f"retention until deleted: rmq group delete {topic} {wanted}",
                        err=True,
                    )
            return shown

        run_admin(ctx, as_group, interruptible=True)
        return

    bound = start if start in ("first", "last") else parse_bound(start, "--from")

    async def tail(admin: Admin) -> int:
        await _check_topic(admin, topic, create)
        shown = 0
        with anyio.move_on_after(float("inf") if wait is None else wait):
            async with aclosing(admin.tail(topic, start=bound)) as messages:
                async for msg in messages:
                    _show(out, msg)
                    shown += 1
                    if count is not None and shown >= count:
                        break
        return shown

    run_admin(ctx, tail, interruptible=True)
