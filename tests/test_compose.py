"""compose/: what can be checked without a Docker engine.

The YAML parses and references existing files, images are pinned, ports listen on 127.0.0.1,
services have health checks, Redis is durable and never evicts, `promtool check config` accepts
the Prometheus config (skipped locally without promtool, required on CI), Prometheus scrapes the
workers, the producer and the exporter and loads the alert rules (tested in test_alerts.py).
The dashboard JSON loads into any Grafana (a datasource variable, no fixed uid; job and instance
variables), every metric its queries use exists in rmq.metrics, every Redis-state gauge is
aggregated with max/min by so that a second exporter cannot double it, rates are in messages.
Also the traffic generator runs. tests/test_prometheus.py runs these queries on a real server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import rmq
from rmq import metrics
from tests.helpers import make_settings
from workers.traffic import produce

COMPOSE = Path(__file__).resolve().parent.parent / "compose"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load(COMPOSE / "compose.yaml")
    return doc


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "prometheus", "grafana", "exporter", "workers", "traffic"} <= set(services)
    assert services["workers"]["profiles"] == ["workers"]
    assert services["traffic"]["profiles"] == ["workers"]
    for name in ("redis", "prometheus", "grafana", "exporter"):
        assert "profiles" not in services[name], name


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag not in ("latest", ""), f"{name}: {image}"
        if "build" not in service:
            assert re.search(r"\d+\.\d+", tag), f"{name}: pin a version, not {image}"
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base and re.search(r":\d+\.\d+\.\d+", base.group(1))


def test_ports_bind_to_localhost_and_health_checks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
        if name != "traffic":
            assert service["healthcheck"]["test"], name


def test_referenced_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
        build = service.get("build")
        if build:
            context = COMPOSE / build["context"]
            assert (context / build["dockerfile"]).is_file()
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, re.M):
        for item in source.split():
            assert (COMPOSE.parent / item).exists(), item
    modules = [
        arg for service in compose["services"].values()
        for arg in service.get("command", []) if re.fullmatch(r"workers\.\w+(:\w+)?", str(arg))
    ]  # fmt: skip
    assert modules
    for module in modules:
        assert (COMPOSE.parent / (module.split(":")[0].replace(".", "/") + ".py")).is_file()


def test_redis_is_durable_and_never_evicts() -> None:
    conf = dict(
        line.split(None, 1)
        for line in (COMPOSE / "redis" / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"


def test_prometheus_scrapes_workers_producer_and_exporter(compose: dict[str, Any]) -> None:
    config = load(COMPOSE / "prometheus" / "prometheus.yml")
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    services = compose["services"]
    workers = services["workers"]["command"]
    exporter = services["exporter"]["command"]
    worker_port = workers[workers.index("--metrics-port") + 1]
    exporter_port = exporter[exporter.index("--port") + 1]
    producer_port = services["traffic"]["environment"]["RMQ_METRICS_PORT"]
    assert targets == {
        "rmq-workers": [f"workers:{worker_port}"],
        "rmq-producers": [f"traffic:{producer_port}"],
        "rmq-exporter": [f"exporter:{exporter_port}"],
    }
    assert "--export-state" not in workers  # the exporter serves the Redis state, once
    assert services["traffic"]["environment"]["RMQ_BIND"] == "0.0.0.0"
    assert producer_port in services["traffic"]["expose"]


def test_prometheus_loads_the_alert_rules(compose: dict[str, Any]) -> None:
    config = load(COMPOSE / "prometheus" / "prometheus.yml")
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    assert mounts["./prometheus/rules"] == "/etc/prometheus/rules"
    rules = [
        path for pattern in config["rule_files"] for path in (COMPOSE / "prometheus").glob(pattern)
    ]
    assert COMPOSE / "prometheus" / "rules" / "rmq-alerts.yml" in rules


def test_promtool_accepts_the_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [promtool, "check", "config", str(COMPOSE / "prometheus" / "prometheus.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning() -> None:
    datasources = load(COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    (source,) = datasources["datasources"]
    assert (source["type"], source["url"], source["uid"]) == (
        "prometheus", "http://prometheus:9090", "prometheus",
    )  # fmt: skip
    providers = load(COMPOSE / "grafana" / "provisioning" / "dashboards" / "rmq.yaml")
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (COMPOSE / "grafana" / "dashboards" / "rmq-overview.json").read_text()
    )
    return doc


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    return [(p, t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def expressions(dashboard: dict[str, Any]) -> list[str]:
    out = [expr for _, expr in panel_queries(dashboard)]
    out += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return out


def test_dashboard_uses_only_rmq_metrics() -> None:
    dashboard = load_dashboard()
    exprs = expressions(dashboard)
    used = {
        re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"rmq_\w+", e)
    }
    assert used, "no rmq metric in the dashboard"
    assert used <= metrics.METRIC_NAMES, used - metrics.METRIC_NAMES
    for needed in (
        "rmq_messages_published_total", "rmq_messages_consumed_total",
        "rmq_consume_duration_seconds", "rmq_consumer_lag", "rmq_consumer_pending",
        "rmq_dlq_length", "rmq_delayed_messages", "rmq_messages_in_flight",
    ):  # fmt: skip
        assert needed in used, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def datasources(node: Any) -> list[Any]:
    """Every "datasource" value anywhere in the dashboard."""
    if isinstance(node, dict):
        found = [node["datasource"]] if "datasource" in node else []
        return found + [d for value in node.values() for d in datasources(value)]
    if isinstance(node, list):
        return [d for value in node for d in datasources(value)]
    return []


def test_dashboard_imports_into_any_grafana() -> None:
    """No fixed datasource uid: a datasource variable, then job and instance variables."""
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables)[:3] == ["datasource", "job", "instance"]
    assert {"topic", "group"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "rmq_build_info" in variables["job"]["definition"]  # every rmq endpoint exports it
    assert "$job" in variables["instance"]["definition"]
    found = datasources(dashboard)
    assert found
    assert all(d == {"type": "prometheus", "uid": "${datasource}"} for d in found), found
    for panel, expr in panel_queries(dashboard):
        for selector in re.findall(r"(?:rmq|process)_\w+\{[^}]*\}", expr):
            assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, (
                panel["title"], selector,
            )  # fmt: skip


def test_dashboard_gauges_from_redis_do_not_add_up_duplicates() -> None:
    """Each Redis-state gauge is aggregated with max by / min by first: two exporters of one
    Redis (or a worker with --export-state) show the same value, not twice the value."""
    dashboard = load_dashboard()
    checked = 0
    for panel, expr in panel_queries(dashboard):
        for match in re.finditer(r"\b(rmq_\w+)\{", expr):
            if match.group(1) not in metrics.STATE_GAUGES:
                continue
            before = expr[: match.start()]
            assert re.search(r"\b(max|min)(\s+by\s*\([^()]*\))?\s*\($", before), (
                panel["title"], expr,
            )  # fmt: skip
            checked += 1
    assert checked >= 10


def test_dashboard_units_and_redis_up_mapping() -> None:
    dashboard = load_dashboard()
    panels = {p["title"]: p for p in dashboard["panels"]}
    for panel, expr in panel_queries(dashboard):
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit not in ("reqps", "rps", "ops", "wps"), panel["title"]
        if re.search(r"rate\(rmq_\w+_total", expr):
            assert unit == "count:msg/s", panel["title"]
    redis_up = panels["Redis up"]["fieldConfig"]["defaults"]
    (mapping,) = redis_up["mappings"]
    assert mapping["type"] == "value"
    assert {k: v["text"] for k, v in mapping["options"].items()} == {"0": "down", "1": "up"}
    assert redis_up["noValue"] == "no exporter"


async def test_traffic_generator(redis_url: str, namespace: str) -> None:
    async with rmq.App(make_settings(redis_url, namespace)) as app:
        assert await produce(app, rate=1000, limit=5) == 5
        found = await app.admin.query_key("orders", "order-3")
    assert [m.body["id"] for m in found] == [3]
