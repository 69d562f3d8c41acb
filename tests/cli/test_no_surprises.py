"""No input makes a command print a traceback: malformed ids, missing topics and groups, busy
ports, bad settings. Each failure is one line on stderr and the exit code of the table."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from rmq.cli.options import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_START,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from rmq.embedded import free_port
from tests.cli.conftest import REPO_ROOT, Invoke, run_rmq, subprocess_env

BAD_ID = "018F2B..."
HUGE = "99999999999999999999999-0"
MISSING_TOPIC = [
    ["topic", "status", "nosuch"], ["topic", "trim", "nosuch"], ["topic", "delete", "nosuch"],
    ["topic", "update", "nosuch", "--retention", "1h"],
    ["topic", "update", "nosuch", "--queues", "8"],
    ["group", "list", "nosuch"], ["group", "progress", "nosuch", "g"],
    ["group", "consumers", "nosuch", "g"], ["group", "delete", "nosuch", "g"],
    ["group", "reset-offset", "nosuch", "g", "--to-first"],
    ["message", "show", "nosuch", "0" * 32], ["message", "print", "nosuch"],
    ["message", "query", "nosuch", "-k", "k"],
    ["dlq", "count", "nosuch", "g"], ["dlq", "list", "nosuch", "g"],
    ["dlq", "show", "nosuch", "g", "0/1-0"], ["dlq", "replay", "nosuch", "g", "--all"],
    ["dlq", "purge", "nosuch", "g", "--all"], ["dlq", "purge", "nosuch", "g", "--older-than", "1d"],
    ["transaction", "list", "nosuch"], ["transaction", "count", "nosuch"],
    ["consume", "nosuch", "-g", "g", "-w", "0"], ["consume", "nosuch", "-w", "0"],
    ["doctor", "nosuch"],
]  # fmt: skip
MISSING_GROUP = [
    ["group", "progress", "orders", "nobody"], ["group", "consumers", "orders", "nobody"],
    ["group", "delete", "orders", "nobody"],
    ["group", "reset-offset", "orders", "nobody", "--to-last"],
    ["dlq", "count", "orders", "nobody"], ["dlq", "list", "orders", "nobody"],
    ["dlq", "show", "orders", "nobody", "0/1-0"], ["dlq", "replay", "orders", "nobody", "--all"],
    ["dlq", "purge", "orders", "nobody", "--all"],
]  # fmt: skip
NOT_FOUND = [
    ["message", "show", "orders", "0" * 32], ["message", "show", "orders", "1-1"],
    ["message", "show", "orders", "--queue", "1", "--offset", "1-1"],
    ["dlq", "show", "orders", "billing", "0/1-1"], ["dlq", "show", "orders", "billing", "1-1"],
    ["dlq", "show", "orders", "billing", "9/1-1"],
    ["dlq", "replay", "orders", "billing", "0" * 32, "--yes"],
    ["dlq", "purge", "orders", "billing", "0/1-1", "--yes"],
]  # fmt: skip
MALFORMED = [
    ["message", "show", "orders", BAD_ID], ["message", "show", "orders", HUGE],
    ["message", "show", "orders", "--queue", "0", "--offset", "bad"],
    ["message", "show", "orders", "--queue", "0", "--offset", HUGE],
    ["message", "show", "orders", "--queue", "9", "--offset", "1-0"],
    ["message", "print", "orders", "--from", "bad"], ["message", "print", "orders", "--to", HUGE],
    ["message", "print", "orders", "--from", "99999999999999999999999"],
    ["message", "print", "orders", "--queue", "-1"],
    ["message", "query", "orders", "-k", "two words"],
    ["message", "query", "orders", "-k", "k", "--from", "tomorrow"],
    ["dlq", "show", "orders", "billing", "0/bad"], ["dlq", "show", "orders", "billing", BAD_ID],
    ["dlq", "show", "orders", "billing", "x/1-0"],
    ["dlq", "replay", "orders", "billing", "0/1-0", "--all"],
    ["dlq", "replay", "orders", "billing", "--all", "--to", "elsewhere"],
    ["dlq", "purge", "orders", "billing", "--older-than", "soon"],
    ["dlq", "list", "orders", "billing", "--limit", "0"],
    ["group", "reset-offset", "orders", "billing", "--to-time", "yesterday", "--yes"],
    ["group", "reset-offset", "orders", "billing", "--to-time", "9" * 30, "--yes"],
    ["group", "reset-offset", "orders", "billing", "--yes"],
    ["topic", "create", "bad name"], ["topic", "create", "orders", "--queues", "0"],
    ["topic", "update", "orders"], ["topic", "update", "orders", "--retention", "3 days"],
    ["topic", "update", "orders", "--queues", "1"],  # queues never shrink
    ["topic", "update", "orders", "--max-len", "many"],
    ["send", "orders", "x", "--delay", "soon"], ["send", "orders", "{", "--type", "json"],
    ["send", "orders", "x", "--property", "novalue"], ["send", "bad topic", "x"],
    ["consume", "orders", "-g", "bad group", "-w", "0"],
    ["consume", "orders", "-g", "g", "--from", "1h"], ["consume", "orders", "--from", "whenever"],
    ["transaction", "list", "orders", "--queue", "99"],
    ["transaction", "list", "orders", "--discarded"],
    ["worker", "run", "nosuchmodule:app"], ["worker", "run", "workers.orders:ap"],
    ["worker", "run", "workers.orders:app", "--log-level", "LOUD"],
    ["worker", "check", "workers.orders:nope"],
    ["metrics", "serve", "--log-level", "chatty"],
    ["schema", "nope"], ["nope"], ["topic", "nope"], ["topic", "status"],
    ["--namespace", "bad ns", "topic", "list"], ["-u", "http://example.invalid", "topic", "list"],
]  # fmt: skip


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_the_exit_code_table() -> None:
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4]


def test_every_command_fails_in_one_line(cli: Invoke) -> None:
    cli("topic", "create", "orders", "-q", "2")
    cli("consume", "orders", "-g", "billing", "-w", "0")
    for code, cases in (
        (EXIT_FAILURE, MISSING_TOPIC + MISSING_GROUP + NOT_FOUND),
        (EXIT_USAGE, MALFORMED),
    ):
        for args in cases:
            result = cli(*args, code=None, input="")
            assert isinstance(result.exception, SystemExit), (args, result.exception)
            assert result.exit_code == code, (args, result.exit_code, result.stderr)
            one_error_line(result.stderr)
            assert result.stdout == "", (args, result.stdout)


def test_missing_things_are_named(cli: Invoke) -> None:
    cli("topic", "create", "orders")
    topic = cli("consume", "TYPO", "-g", "g", "-w", "0", code=EXIT_FAILURE).stderr
    assert "topic 'TYPO' does not exist" in topic and "--create" in topic
    assert cli("topic", "list", "--json").stdout.count('"name"') == 1  # nothing created
    group = cli("group", "delete", "orders", "nobody", code=EXIT_FAILURE, input="y\n")
    assert "does not exist" in group.stderr and "[y/N]" not in group.output  # not even asked
    bad_id = cli("message", "show", "orders", BAD_ID, code=EXIT_USAGE).stderr
    assert "neither a msg_id" in bad_id
    attr = cli("worker", "run", "workers.orders:ap", code=EXIT_USAGE).stderr
    assert "has no attribute 'ap'" in attr and "did you mean workers.orders:app?" in attr
    level = cli("worker", "run", "workers.orders:app", "--log-level", "LOUD", code=2).stderr
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in level
    assert "CRITICAL" in cli("worker", "run", "--help").stdout


def test_consume_creates_only_when_asked_and_says_so(cli: Invoke) -> None:
    created = cli("consume", "fresh", "--create", "-g", "g", "-w", "0")
    assert "created consumer group 'g' on topic 'fresh'" in created.stderr
    assert "rmq group delete fresh g" in created.stderr
    again = cli("consume", "fresh", "-g", "g", "-w", "0")
    assert again.stderr == ""  # the group exists now: nothing to say


def test_unreachable_redis_is_one_line(cli: Invoke) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for args in (["doctor"], ["group", "consumers", "o", "g"], ["consume", "o", "-g", "g"]):
        result = cli("-u", url, *args, code=EXIT_UNAVAILABLE)
        one_error_line(result.stderr)


def test_unknown_variables_are_warned_about(cli: Invoke, env: dict[str, str]) -> None:
    result = cli("topic", "list", env={**env, "RMQ_RETENTOIN": "3d", "RMQ_BIND": "0.0.0.0"})
    assert result.stderr.splitlines() == [
        "warning: RMQ_RETENTOIN is not an rmq setting and is ignored (did you mean RMQ_RETENTION?)"
    ]
    cli("topic", "create", "orders", env={**env, "RMQ_RETENTION": "3d"})
    doc = cli("topic", "status", "orders", "--json", env={**env, "RMQ_RETENTION": "3d"}).stdout
    assert '"retention_seconds": 259200.0' in doc
    bad = cli("topic", "list", env={**env, "RMQ_SOCKET_TIMEOUT": "soon"}, code=EXIT_USAGE)
    assert "RMQ_SOCKET_TIMEOUT='soon' is not a valid duration" in one_error_line(bad.stderr)


@pytest.mark.parametrize(
    "command",
    [["metrics", "serve", "--port"], ["worker", "run", "workers.orders:app", "--metrics-port"]],
)
def test_a_busy_port_is_one_line_and_exit_4(env: dict[str, str], command: list[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        done = run_rmq([*command, port], env, timeout=60)
    assert done.returncode == EXIT_START, done.stderr
    line = one_error_line(done.stderr.decode())
    assert "cannot listen" in line and "ExceptionGroup" not in line


def test_the_readme_example_id_is_a_usage_error(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "rmq", "topic", "create", "orders"],
        env=subprocess_env(env), cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    done = run_rmq(["message", "show", "orders", BAD_ID], env)
    assert done.returncode == EXIT_USAGE
    one_error_line(done.stderr.decode())
