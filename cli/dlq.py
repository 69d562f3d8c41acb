"""`rmq dlq count|list|show|replay|purge`: a consumer group's dead-letter queue.

A dead letter is named `<queue>/<dead-letter id>` (as `list` prints it) or by its message's msg_id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from rmq.admin import Admin
from rmq.dlq import DeadLetter, DeadLetters

from .options import (
    EXIT_FAILURE,
    EXIT_USAGE,
    GroupArg,
    JsonOption,
    TopicArg,
    YesOption,
    bad,
    check_message_ref,
    check_offset,
    parse_duration,
)
from .output import jsonable, message_doc, short
from .runtime import confirm, fail, output, run_admin

app = typer.Typer(help="Dead-letter queues: list, show, replay, purge.", no_args_is_help=True)

EntriesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dead letters as <queue>/<id> (from `dlq list`) or msg_ids.", show_default=False
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter of the group.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Only print what would be done.", show_default=False)
]


def letter_doc(letter: DeadLetter) -> dict[str, Any]:
    """The JSON of one dead letter (stable keys)."""
    return {
        "topic": letter.topic,
        "group": letter.group,
        "queue_id": letter.queue_id,
        "id": letter.id,
        "msg_id": letter.msg_id,
        "reason": letter.reason,
        "error": letter.error,
        "attempts": letter.attempts,
        "first_failure_at": jsonable(letter.first_failure_at),
        "last_failure_at": jsonable(letter.last_failure_at),
        "offset": letter.offset,
        "lost": letter.lost,
        "message": None if letter.message is None else message_doc(letter.message),
    }


def _check_names(names: list[str] | None, every: bool) -> list[tuple[int | None, str]]:
    """(queue, dead-letter id) or (None, msg_id) per name; malformed ones exit 2."""
    if every == bool(names):
        raise bad("name dead letters, or pass --all (not both)", "ENTRIES")
    out: list[tuple[int | None, str]] = []
    for name in names or []:
        queue, slash, dead_id = name.partition("/")
        if slash:
            if not queue.isdigit():
                raise bad(f"{name!r}: a dead letter is <queue>/<id> (as `dlq list` prints it)",
                          "ENTRIES")  # fmt: skip
            out.append((int(queue), check_offset(dead_id, "ENTRIES")))
        else:
            out.append((None, check_message_ref(name, "ENTRIES")))
    return out


async def _select(
    admin: Admin, topic: str, group: str, names: list[str] | None, every: bool
) -> tuple[DeadLetters, list[DeadLetter]]:
    """The group's DLQ and the dead letters named (missing topic, group or letter: exit 1)."""
    wanted = _check_names(names, every)
    info = await admin.require_group(topic, group)
    dlq = admin.dead_letters(topic, group)
    if every:
        return dlq, await dlq.everything()
    found: list[DeadLetter] = []
    for queue, ref in wanted:
        if queue is not None:
            letter = None if queue >= info.queues else await dlq.get(queue, ref)
            if letter is None:
                fail(f"no dead letter {queue}/{ref} in {topic}/{group}", EXIT_FAILURE)
            found.append(letter)
        else:
            letters = await dlq.find(ref)
            if not letters:
                fail(f"no dead letter with msg_id {ref} in {topic}/{group}", EXIT_FAILURE)
            found.extend(letters)
    return dlq, found


async def _dlq(admin: Admin, topic: str, group: str) -> DeadLetters:
    await admin.require_group(topic, group)
    return admin.dead_letters(topic, group)


@app.command("count")
def count(ctx: typer.Context, topic: TopicArg, group: GroupArg, json: JsonOption = False) -> None:
    """How many dead letters the group has, per queue."""

    async def count_(admin: Admin) -> dict[int, int]:
        return await (await _dlq(admin, topic, group)).counts()

    counts = run_admin(ctx, count_)
    out = output(ctx, json)
    if out.json:
        queues = [{"queue_id": q, "count": n} for q, n in sorted(counts.items())]
        out.document(
            {"topic": topic, "group": group, "total": sum(counts.values()), "queues": queues}
        )
    else:
        out.line(f"{topic}/{group}: {sum(counts.values())} dead letters")


@app.command("list")
def list_(
    ctx: typer.Context,
    topic: TopicArg,
    group: GroupArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    queue: Annotated[int | None, typer.Option("--queue", min=0, help="Only this queue.")] = None,
    json: JsonOption = False,
) -> None:
    """The oldest dead letters first, with reason, attempts and error."""

    async def entries(admin: Admin) -> list[DeadLetter]:
        return await (await _dlq(admin, topic, group)).entries(limit, queue_id=queue)

    letters = run_admin(ctx, entries)
    out = output(ctx, json)
    if out.json:
        out.document(
            {"topic": topic, "group": group, "dead_letters": [letter_doc(x) for x in letters]}
        )
        return
    out.table(
        f"{topic}/{group}: {len(letters)} dead letter(s)",
        ["ENTRY", "MSG ID", "REASON", "ATTEMPTS", "LAST FAILURE", "ERROR", "BODY"],
        [
            (f"{x.queue_id}/{x.id}", x.msg_id, x.reason, x.attempts,
             jsonable(x.last_failure_at), short(x.error, 40),
             short(x.message.body, 30) if x.message else "<undecodable>")
            for x in letters
        ],
    )  # fmt: skip


@app.command("show")
def show(
    ctx: typer.Context, topic: TopicArg, group: GroupArg, entry: Annotated[str, typer.Argument(
        help="<queue>/<id> or a msg_id.", show_default=False)], json: JsonOption = False,
) -> None:  # fmt: skip
    """One dead letter in full: metadata, original fields and the decoded message."""

    _check_names([entry], False)

    async def find(admin: Admin) -> list[DeadLetter]:
        return (await _select(admin, topic, group, [entry], False))[1]

    letters = run_admin(ctx, find)
    out = output(ctx, json)
    if out.json:
        out.document(
            {"topic": topic, "group": group, "dead_letters": [letter_doc(x) for x in letters]}
        )
        return
    for x in letters:
        doc = letter_doc(x)
        for key in ("queue_id", "id", "msg_id", "reason", "error", "attempts", "first_failure_at",
                    "last_failure_at", "offset", "lost"):  # fmt: skip
            out.line(f"{key}: {doc[key]}")
        out.line(f"body: {short(x.message.body, 2000) if x.message else '<undecodable>'}")


@app.command("replay")
def replay(
    ctx: typer.Context,
    topic: TopicArg,
    group: GroupArg,
    entries: EntriesArg = None,
    every: AllOption = False,
    to: Annotated[
        str, typer.Option("--to", help="group: only this group, fresh retries; topic: every group.")
    ] = "group",
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    json: JsonOption = False,
) -> None:
    """Put dead letters back for consumption (one atomic move each)."""
    if to not in ("group", "topic"):
        fail("--to is group or topic", EXIT_USAGE)
    target: Literal["group", "topic"] = "group" if to == "group" else "topic"

    _check_names(entries, every)

    async def run(admin: Admin) -> list[DeadLetter]:
        dlq, chosen = await _select(admin, topic, group, entries, every)
        if not dry_run and chosen:
            confirm(f"replay {len(chosen)} dead letter(s) of {topic}/{group} to the {to}?", yes)
        result: list[DeadLetter] = await dlq.replay(chosen, to=target, dry_run=dry_run)
        return result

    done = run_admin(ctx, run)
    out = output(ctx, json)
    verb = "would replay" if dry_run else "replayed"
    if out.json:
        out.document({"topic": topic, "group": group, "dry_run": dry_run, "to": to,
                      "replayed": [letter_doc(x) for x in done]})  # fmt: skip
    else:
        out.line(f"{verb} {len(done)} dead letter(s) of {topic}/{group} to the {to}")


@app.command("purge")
def purge(
    ctx: typer.Context,
    topic: TopicArg,
    group: GroupArg,
    entries: EntriesArg = None,
    every: AllOption = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Every dead letter dead-lettered longer ago than this (30s, 15m, 12h, 7d).",
            show_default=False,
        ),
    ] = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    json: JsonOption = False,
) -> None:
    """Delete dead letters for good."""
    age = None
    if older_than is not None:
        if entries or every:
            fail("--older-than selects by age: name no dead letters, no --all", EXIT_USAGE)
        age = parse_duration(older_than, "--older-than")
    else:
        _check_names(entries, every)

    async def run(admin: Admin) -> int:
        if age is not None:
            dlq = await _dlq(admin, topic, group)
            if dry_run:
                return int(await dlq.purge_older_than(age, dry_run=True))
            confirm(f"delete the dead letters of {topic}/{group} older than {older_than}?", yes)
            return int(await dlq.purge_older_than(age))
        dlq, chosen = await _select(admin, topic, group, entries, every)
        if dry_run or not chosen:
            return len(chosen)
        confirm(f"delete {len(chosen)} dead letter(s) of {topic}/{group} for good?", yes)
        return int(await dlq.purge(chosen))

    count_ = run_admin(ctx, run)
    out = output(ctx, json)
    if out.json:
        out.document({"topic": topic, "group": group, "dry_run": dry_run, "purged": count_})
    else:
        out.line(
            f"{'would purge' if dry_run else 'purged'} {count_} dead letter(s) of {topic}/{group}"
        )
