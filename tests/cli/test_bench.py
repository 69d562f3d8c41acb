"""`rmq bench produce|consume|e2e|delay`: tiny counts against the test server."""

from __future__ import annotations

import json

import pytest
import redis

from tests.cli.conftest import Invoke, as_json, run_rmq


def bench_keys(r: redis.Redis) -> list[bytes]:
    return list(r.scan_iter(match="bench-*", count=1000))


def check_summary(doc: dict[str, object], command: str, messages: int) -> None:
    assert doc["command"] == command
    assert doc["messages"] == messages
    assert doc["failures"] == 0
    assert isinstance(doc["msgs_per_second"], float) and doc["msgs_per_second"] > 0
    assert isinstance(doc["mb_per_second"], float) and doc["mb_per_second"] > 0
    latency = doc["latency_seconds"]
    assert isinstance(latency, dict)
    assert set(latency) >= {"avg", "p50", "p99", "max"}
    assert latency["p50"] <= latency["p99"] <= latency["max"]


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "200"],
        ["-n", "200", "-c", "8", "--tag", "--keys", "--payload", "str", "--size", "300"],
        ["-n", "200", "--batch", "16", "--payload", "bytes", "-c", "2"],
    ],
)
def test_produce(cli: Invoke, r: redis.Redis, args: list[str]) -> None:
    doc = as_json(cli("--json", "bench", "produce", *args))
    check_summary(doc, "produce", 200)
    assert doc["config"]["count"] == 200
    assert doc["server"]["name"] in ("redis", "valkey")
    assert bench_keys(r) == []  # its own namespace, deleted at the end


def test_produce_duration_bounds_the_run(cli: Invoke) -> None:
    doc = as_json(cli("bench", "produce", "-n", "100000000", "--duration", "0.3", "--json"))
    assert 0 < doc["messages"] < 100_000_000
    assert doc["failures"] == 0
    assert doc["elapsed_seconds"] < 5


def test_consume(cli: Invoke, r: redis.Redis) -> None:
    doc = as_json(cli("--json", "bench", "consume", "-n", "300", "--tag", "--keys", "-c", "4"))
    check_summary(doc, "consume", 300)
    assert doc["duplicates"] == 0 and doc["not_consumed"] == 0
    assert bench_keys(r) == []


def test_e2e(cli: Invoke, r: redis.Redis) -> None:
    doc = as_json(cli("--json", "bench", "e2e", "--rate", "1000", "-n", "200"))
    check_summary(doc, "e2e", 200)
    assert doc["offered_rate"] == 1000
    assert doc["achieved_rate"] > 0
    assert doc["latency_seconds"]["p50"] < 1.0
    assert bench_keys(r) == []


def test_delay(cli: Invoke, r: redis.Redis) -> None:
    doc = as_json(cli("--json", "bench", "delay", "--delay", "0.2", "--rate", "500", "-n", "50"))
    check_summary(doc, "delay", 50)
    assert doc["config"]["delay_seconds"] == 0.2
    assert doc["latency_seconds"]["max"] < 5.0  # lateness, not the delay itself
    assert bench_keys(r) == []


def test_human_summary_and_progress(cli: Invoke) -> None:
    result = cli("bench", "produce", "--duration", "1.3", "-n", "100000000")
    assert "throughput" in result.stdout and "msgs/s" in result.stdout
    assert "p99" in result.stdout and "MB/s" in result.stdout
    assert "produce: " in result.stderr and "msgs/s" in result.stderr  # the progress line
    quiet = cli("bench", "produce", "-n", "50", "-q")
    assert quiet.stderr == ""


def test_bad_options(cli: Invoke) -> None:
    assert "--help shows the usage" in cli("bench", "produce", "-n", "0", code=2).stderr
    assert "--help shows the usage" in cli("bench", "e2e", "--payload", "xml", code=2).stderr


def test_unreachable_redis(cli: Invoke, env: dict[str, str]) -> None:
    down = {**env, "RMQ_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = cli("bench", "produce", "-n", "10", code=3, env=down)
    assert "unreachable" in result.stderr


def test_subprocess_embedded(env: dict[str, str]) -> None:
    """As users run it: a real process, a private server (--embedded), JSON on stdout only."""
    proc = run_rmq(["bench", "e2e", "--embedded", "-n", "100", "--rate", "500", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    check_summary(doc, "e2e", 100)
    assert doc["server"]["url"] == "embedded"
    assert b"Traceback" not in proc.stderr
