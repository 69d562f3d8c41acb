"""Every command line of the documentation is run, or checked as far as this machine allows.

Pages show shell commands only from `docs/snippets/*.sh` (see test_pages.py). Each file is:

- **run** (`RUN`): executed line by line with `bash -e` against the test server, in a fresh
  namespace: every command must succeed;
- **the quickstart** (`quickstart.sh`): run by test_quickstart.py (it starts a worker);
- **checked** (all others): commands that need a machine of their own (Docker, a cluster, a
  benchmark run, a long-running worker). Each line is parsed as its program would parse it
  without running it: `rmq ...` through the typer application's click parser (an unknown
  option, a missing argument or a bad value fails), `make X` against the Makefile's targets,
  `docker compose -f F [--profile P]` against the compose file, `python bench/X.py --options`
  against that script's `--help`, `pip install -e .` as a literal.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from rmq.cli.main import app as cli_app
from tests.docs.conftest import ROOT, SNIPPETS, snippet_env

RUN = {"cli_tour.sh"}
SCRIPTS = sorted(SNIPPETS.glob("*.sh"))
CHECKED = [p for p in SCRIPTS if p.name not in RUN and p.name != "quickstart.sh"]
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def command_lines(path: Path) -> list[list[str]]:
    """The commands of a snippet file: one per line, comments, env assignments and pipes cut."""
    lines = []
    for raw in path.read_text().splitlines():
        words = shlex.split(raw, comments=True)
        while words and _ASSIGNMENT.match(words[0]):
            words.pop(0)
        if "|" in words:
            words = words[words.index("|") + 1 :]
        if words:
            lines.append(words)
    return lines


EAGER = {"--install-completion", "--show-completion", "--help"}
"""Options whose callbacks act while parsing (typer's completion installer writes to the shell's
rc file): only checked to exist, never parsed."""


def parse_rmq(args: list[str]) -> Any:
    """Parse `rmq args...` down to the leaf command, as click would before invoking it."""
    command: Any = typer.main.get_command(cli_app)
    eager = EAGER.intersection(args)
    if eager:
        declared = {opt for param in command.params for opt in param.opts}
        assert eager <= declared | {"--help"}, eager
        return None
    ctx = command.make_context("rmq", list(args))
    while hasattr(command, "commands"):
        rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def check_line(words: list[str]) -> None:
    program, args = words[0], words[1:]
    if program == "rmq":
        parse_rmq(args)
    elif program.endswith("python") and args[:2] == ["-m", "rmq"]:
        parse_rmq(args[2:])
    elif program.endswith("python") and args[:1] == ["-m"] and args[1].startswith("workers."):
        module = args[1].removeprefix("workers.")
        assert (ROOT / "workers" / f"{module}.py").is_file(), args[1]
        runs = [p for p in (ROOT / "tests").rglob("test_*.py") if f'"{args[1]}"' in p.read_text()]
        assert runs, f"no test runs python -m {args[1]}"
    elif program == "make":
        targets = re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M)
        assert args and all(a in targets for a in args), f"no make target {args}"
    elif program == "docker" and args[:1] == ["compose"]:
        path = ROOT / args[args.index("-f") + 1]
        spec = yaml.safe_load(path.read_text())
        if "--profile" in args:
            profile = args[args.index("--profile") + 1]
            assert any(profile in s.get("profiles", []) for s in spec["services"].values())
        assert args[-2:] == ["up", "-d"] or args[-1] in ("down", "ps", "logs"), args
    elif program.endswith("python") and args and args[0].startswith("bench/"):
        script = ROOT / args[0]
        usage = subprocess.run(
            [sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True,
            timeout=60, check=True,
        ).stdout  # fmt: skip
        for option in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
            assert option in usage, f"{args[0]} has no option {option}"
    elif words == ["pip", "install", "-e", "."]:
        assert (ROOT / "pyproject.toml").is_file()
    else:
        raise AssertionError(f"no check for the documented command {shlex.join(words)!r}")


def test_every_script_has_a_mode() -> None:
    assert RUN <= {p.name for p in SCRIPTS}
    assert (SNIPPETS / "quickstart.sh").is_file()
    assert CHECKED


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.name)
def test_documented_commands_parse(path: Path) -> None:
    lines = command_lines(path)
    assert lines
    for words in lines:
        check_line(words)


def test_the_checks_catch_mistakes() -> None:
    for bad in (
        ["rmq", "worker", "run", "workers.orders:app", "--no-such-option"],
        ["rmq", "topic", "create"],
        ["rmq", "topic", "create", "orders", "--queues", "0"],
        ["make", "no-such-target"],
    ):
        with pytest.raises(Exception):  # noqa: B017 (click's UsageError or an assert)
            check_line(bad)
    for bad in (["topics", "list"], ["worker", "run", "--no-such-option"]):
        with pytest.raises(AssertionError):
            check_reference(bad)
    check_reference(["worker", "run", "--processes", "N"])


@pytest.mark.parametrize("name", sorted(RUN))
def test_documented_commands_run(name: str, redis_url: str, namespace: str, tmp_path: Path) -> None:
    env = snippet_env(redis_url, namespace)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-x", str(SNIPPETS / name)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "+ rmq topic delete orders --yes" in done.stderr  # it ran to the end


INLINE = re.compile(r"`((?:python -m )?rmq [^`]+)`")
PATTERN = re.compile(r"(?<![:/])\b[a-z-]+/[a-z-]+\b")
"""`list/show/replay`: alternatives, not a command line (URLs and paths have `:` or `/` before)."""


def check_reference(words: list[str]) -> None:
    """`rmq topic update --retention`: the command exists and has the options named."""
    command: Any = typer.main.get_command(cli_app)
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    rest = list(words)
    while rest and hasattr(command, "commands") and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
        options |= {opt for param in command.params for opt in getattr(param, "opts", [])}
    named = {w.split("=")[0] for w in rest if w.startswith("-")}
    assert named <= options, f"no option {sorted(named - options)}"
    assert not (hasattr(command, "commands") and rest and not rest[0].startswith("-")), rest


def test_commands_quoted_in_the_text_parse() -> None:
    """`rmq ...` quoted inline in a page parses too, or, when it only names a command (`rmq dlq
    list`, `rmq worker run --processes N`), that command and its options exist. Patterns with
    `|`, `...`, `<placeholders>` or `a/b` alternatives are prose."""
    from tests.docs.conftest import pages

    checked, failures = 0, []
    for page in pages():
        for quoted in INLINE.findall(page.read_text()):
            if any(mark in quoted for mark in ("|", "...", "<", "[")) or PATTERN.search(quoted):
                continue
            words = shlex.split(quoted)
            try:
                check_line(words)
            except Exception as exc:
                try:  # not a whole command line: a reference to a command and its options
                    check_reference(words[words.index("rmq") + 1 :])
                except AssertionError as missing:
                    failures.append(f"{page.name}: {quoted!r}: {exc}; {missing}")
            checked += 1
    assert not failures, "\n".join(failures)
    assert checked > 20
