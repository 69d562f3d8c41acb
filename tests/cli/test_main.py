"""Global options, --version, exit codes, errors on stderr, shell completion."""

from __future__ import annotations

import platform

import pytest

import rmq
from rmq.cli.complete import complete_group, complete_topic
from rmq.cli.options import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, parse_time
from rmq.embedded import free_port
from tests.cli.conftest import Invoke, as_json


def test_exit_code_constants() -> None:
    assert (EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNAVAILABLE) == (0, 1, 2, 3)


def test_version_shows_the_server(cli: Invoke, redis_url: str) -> None:
    out = cli("--version").stdout.splitlines()
    assert out[0] == f"rmq {rmq.__version__} (Python {platform.python_version()})"
    assert out[1].startswith("server: ") and redis_url in out[1]
    doc = as_json(cli("--json", "--version"))
    assert doc["rmq"] == rmq.__version__
    assert doc["server"]["name"] in ("redis", "valkey")
    assert doc["server"]["version"][0].isdigit()


def test_version_without_a_server(cli: Invoke) -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    out = cli("-u", url, "--version").stdout
    assert "server: not reachable at redis://user:***@127.0.0.1" in out
    assert "s3cret" not in out
    assert as_json(cli("-u", url, "--version", "--json"))["server"] is None


def test_unreachable_redis_exits_3_without_printing_the_password(cli: Invoke) -> None:
    url = f"redis://admin:s3cret@127.0.0.1:{free_port()}/0"
    for args in (["topic", "list"], ["send", "orders", "x"], ["group", "list", "--json"]):
        result = cli("-u", url, *args, code=EXIT_UNAVAILABLE)
        assert "unreachable" in result.stderr
        assert "s3cret" not in result.output
        assert result.stdout == ""
        assert "Traceback" not in result.output


def test_usage_errors_exit_2(cli: Invoke) -> None:
    assert "Usage" in cli(code=EXIT_USAGE).output
    cli("nope", code=EXIT_USAGE)
    cli("topic", "status", code=EXIT_USAGE)
    cli("topic", "list", "--bogus", code=EXIT_USAGE)
    cli("group", "progress", "orders", code=EXIT_USAGE)
    bad_url = cli("-u", "http://example.invalid", "topic", "list", code=EXIT_USAGE)
    assert "must start with redis://" in bad_url.stderr
    cli("--namespace", "bad ns", "topic", "list", code=EXIT_USAGE)


def test_help_shows_environment_variables(cli: Invoke) -> None:
    text = cli("--help").stdout
    assert "RMQ_REDIS_URL" in text and "RMQ_NAMESPACE" in text
    for group in ("topic", "group", "message", "worker", "metrics"):
        cli(group, "--help")
    assert "RMQ_METRICS_PORT" in cli("worker", "run", "--help").stdout


def test_completion_of_topics_and_groups(cli: Invoke, env: dict[str, str]) -> None:
    cli("topic", "create", "orders")
    cli("topic", "create", "other")
    cli("consume", "orders", "-g", "billing", "-w", "0.1")
    result = cli(
        env={**env, "_RMQ_COMPLETE": "complete_bash", "COMP_WORDS": "rmq topic status or",
             "COMP_CWORD": "3"},
        prog_name="rmq",
    )  # fmt: skip
    assert result.stdout.split() == ["orders"]
    result = cli(
        env={**env, "_RMQ_COMPLETE": "complete_bash", "COMP_WORDS": "rmq group progress orders ",
             "COMP_CWORD": "4"},
        prog_name="rmq",
    )  # fmt: skip
    assert result.stdout.split() == ["billing"]


class _Ctx:
    def __init__(self, params: dict[str, object]) -> None:
        self.params = params

    def find_root(self) -> _Ctx:
        return self


def test_completion_never_fails() -> None:
    ctx = _Ctx({"redis_url": f"redis://127.0.0.1:{free_port()}/0", "topic": "orders"})
    assert complete_topic(ctx, "") == []
    assert complete_group(ctx, "") == []
    assert complete_group(_Ctx({}), "") == []


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-05-01T00:00:00Z", 1714521600000),
        ("2024-05-01T02:00:00+02:00", 1714521600000),
        ("1714521600000", 1714521600000),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert int(parse_time(text).timestamp() * 1000) == ms


def test_parse_time_relative_and_local() -> None:
    from datetime import datetime, timedelta

    now = datetime.now().astimezone()
    assert parse_time("15m", now=now) == now - timedelta(minutes=15)
    assert parse_time("2h ago", now=now) == now - timedelta(hours=2)
    assert parse_time("2024-05-01T10:00").tzinfo is not None  # no offset: local time
