"""A real Prometheus scrapes real rmq processes with the shipped config, rules and dashboard.

The scrape config is compose/prometheus/prometheus.yml with its targets pointed at loopback
processes: a worker (`rmq worker run`, default flags), the producer (`python -m workers.traffic`)
and the exporter (`rmq metrics serve`), plus a single-deployment worker run with `--export-state`
as an extra job, which exports the Redis state a second time. Prometheus 2.x asks for OpenMetrics
and gzip, so every target is also scraped in that format.

- the lag of a group is counted once with the shipped setup (not twice, as when workers exported
  the Redis state too), and the dashboard's queries give the right value even with the duplicate;
- every dashboard query evaluates without error, and the publish panels have data;
- the shipped alert rules evaluate without error on this data, and "lag but no consumer" is
  pending for the group nobody consumes.

Needs the `prometheus` binary (Debian's package, installed by `.ci/run`): skipped locally
without it, required on CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from rmq.embedded import free_port
from tests.test_compose import load_dashboard, panel_queries
from tests.test_runner import TOPIC, Runner, runner_env, send, streams

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "compose" / "prometheus" / "prometheus.yml"
RULES = ROOT / "compose" / "prometheus" / "rules" / "rmq-alerts.yml"


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Process:
    """A subprocess with its output in a log file, stopped (then killed) at the end."""

    def __init__(self, log: Path, command: list[str], env: dict[str, str]) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Prometheus:
    def __init__(self, url: str, process: Process) -> None:
        self.url = url
        self.process = process

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as reply:
            doc = json.loads(reply.read())
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query: labels -> value."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline or self.process.popen.poll() is not None:
                raise AssertionError(f"gave up waiting for {what}\n{self.process.tail()}")
            time.sleep(0.25)


@pytest.fixture
def processes() -> Iterator[list[Process | Runner]]:
    started: list[Process | Runner] = []
    yield started
    for proc in reversed(started):
        if isinstance(proc, Runner):
            proc.kill()
        else:
            proc.stop()


def scrape_config(targets: dict[str, int], extra: dict[str, int]) -> dict[str, Any]:
    """The shipped config, its targets on loopback, scraping every 2 s (a slow scrape on a
    loaded machine is no failure) and evaluating the rules every second."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": "2s", "scrape_timeout": "2s",
                        "evaluation_interval": "1s"}  # fmt: skip
    config["rule_files"] = [str(CONFIG.parent / pattern) for pattern in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(targets)
    for name, port in targets.items():
        labels = jobs[name]["static_configs"][0].get("labels", {})
        jobs[name]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"], "labels": labels}]
    for name, port in extra.items():
        config["scrape_configs"].append(
            {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        )
    return config


def dashboard_expr(expr: str, topic: str, group: str) -> str:
    """A dashboard query as Grafana sends it, for one topic and group, every job and instance."""
    values = {"$job": ".*", "$instance": ".*", "$topic": topic, "$group": group,
              "$__rate_interval": "15s"}  # fmt: skip
    return re.sub(r"\$\w+", lambda m: values[m.group(0)], expr)


def test_a_real_prometheus_counts_the_lag_once(
    processes: list[Process | Runner], redis_url: str, namespace: str, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    env = runner_env(redis_url, namespace)
    sent = send(redis_url, namespace, 25)  # 50 messages on the topic the workers consume
    client = redis.Redis.from_url(redis_url)
    try:
        for stream in streams(namespace):  # a group with lag that nobody consumes
            client.xgroup_create(stream, "audit", "0", mkstream=True)
    finally:
        client.close()

    worker = Runner(tmp_path, env)
    processes.append(worker)
    (tmp_path / "single").mkdir()
    single = Runner(tmp_path / "single", env, "--export-state")
    processes.append(single)
    exporter_port, producer_port, prometheus_port = free_port(), free_port(), free_port()
    rmq = [sys.executable, "-m", "rmq"]
    processes.append(Process(
        tmp_path / "exporter.log", [*rmq, "metrics", "serve", "--port", str(exporter_port)], env,
    ))  # fmt: skip
    processes.append(Process(
        tmp_path / "traffic.log", [sys.executable, "-m", "workers.traffic"],
        {**env, "RMQ_METRICS_PORT": str(producer_port), "TRAFFIC_RATE": "100"},
    ))  # fmt: skip

    config = scrape_config(
        {"rmq-workers": worker.metrics_port, "rmq-producers": producer_port,
         "rmq-exporter": exporter_port},
        extra={"rmq-single": single.metrics_port},
    )  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}", Process(
        tmp_path / "prometheus.log",
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    ))  # fmt: skip
    processes.append(prometheus.process)

    def up() -> dict[str, float]:
        try:
            return {dict(k)["job"]: v for k, v in prometheus.query("up").items()}
        except OSError:
            return {}

    prometheus.wait_for("every target up", lambda: sorted(up().values()) == [1.0] * 4)
    audit = '{topic="jobs", group="audit"}'
    lag_by_job = f"sum by (job) (rmq_consumer_lag{audit})"
    prometheus.wait_for(
        "the lag from both exporters", lambda: len(prometheus.query(lag_by_job)) == 2
    )

    # the shipped setup: the worker exports no Redis state, the exporter exports it once
    shipped = prometheus.query(
        'sum(rmq_consumer_lag{topic="jobs", group="audit", job=~"rmq-workers|rmq-exporter"})'
    )
    assert list(shipped.values()) == [len(sent)]
    assert {dict(k)["job"]: v for k, v in prometheus.query(lag_by_job).items()} == {
        "rmq-exporter": len(sent),
        "rmq-single": len(sent),
    }  # the opt-in worker is a second copy: a plain sum would say twice the lag
    assert list(prometheus.query(f"sum(rmq_consumer_lag{audit})").values()) == [2 * len(sent)]
    assert not prometheus.query('{job="rmq-workers", __name__=~"rmq_consumer_.*|rmq_stream_.*"}')

    # the dashboard's queries: no errors, the right lag despite the duplicate, publish data
    dashboard = load_dashboard()
    by_title: dict[str, list[dict[tuple[tuple[str, str], ...], float]]] = {}
    for panel, expr in panel_queries(dashboard):
        by_title.setdefault(panel["title"], []).append(
            prometheus.query(dashboard_expr(expr, TOPIC, "audit"))
        )
    assert list(by_title["Lag"][0].values()) == [len(sent)]
    assert list(by_title["Consumer lag"][0].values()) == [len(sent)]
    assert list(by_title["Dead letters"][0].values()) == [0]
    assert list(by_title["Redis up"][0].values()) == [1]
    assert list(by_title["Stream length"][0].values()) == [len(sent)]
    jobs = {"rmq-workers", "rmq-producers", "rmq-exporter", "rmq-single"}
    assert {dict(k)["job"] for k in by_title["Resident memory"][0]} == jobs

    publish = dashboard_expr(
        next(
            e
            for p, e in panel_queries(dashboard)
            if p["title"] == "Publish rate by topic and status"
        ),
        "orders",
        ".*",
    )
    prometheus.wait_for("publish rates from the producer", lambda: any(
        v > 0 for k, v in prometheus.query(publish).items() if dict(k)["status"] == "ok"
    ))  # fmt: skip
    errors = prometheus.query(
        'rmq_messages_published_total{job="rmq-producers", topic="orders", status="error"}'
    )
    assert list(errors.values()) == [0]  # the error series exists at 0 from the first send
    cpu = next(e for p, e in panel_queries(dashboard) if p["title"] == "CPU (cores)")
    cpu = dashboard_expr(cpu, ".*", ".*")
    prometheus.wait_for("CPU rates of every process", lambda: {
        dict(k)["job"] for k in prometheus.query(cpu)
    } == jobs)  # fmt: skip

    # the shipped rules: every rule evaluates on real data, and the abandoned group is noticed
    def rules() -> list[dict[str, Any]]:
        return [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]

    prometheus.wait_for("the rules evaluated", lambda: all(
        not r["lastEvaluation"].startswith("0001") for r in rules()
    ))  # fmt: skip
    assert {r["name"]: r["health"] for r in rules()} == {r["name"]: "ok" for r in rules()}
    prometheus.wait_for("RmqLagWithoutConsumers pending", lambda: any(
        a["labels"].get("group") == "audit" and a["state"] == "pending"
        for r in rules() if r["name"] == "RmqLagWithoutConsumers" for a in r["alerts"]
    ))  # fmt: skip
    states = {r["name"]: r["state"] for r in rules()}
    for quiet in ("RmqExporterMissing", "RmqWorkerTargetDown", "RmqRedisDown"):
        assert states[quiet] != "firing", quiet  # (one slow scrape may make one pending)
