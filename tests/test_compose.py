"""compose/: what can be checked without a Docker engine.

The YAML parses and references existing files, images are pinned, ports listen on 127.0.0.1,
services have health checks, Redis is durable and never evicts, `promtool check config` accepts
the Prometheus config (skipped locally without promtool, required on CI), the dashboard JSON loads
and every metric its queries use exists in rmq.metrics. Also the traffic generator runs.
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


def test_prometheus_scrapes_workers_and_exporter(compose: dict[str, Any]) -> None:
    config = load(COMPOSE / "prometheus" / "prometheus.yml")
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    workers = compose["services"]["workers"]["command"]
    exporter = compose["services"]["exporter"]["command"]
    worker_port = workers[workers.index("--metrics-port") + 1]
    exporter_port = exporter[exporter.index("--port") + 1]
    assert targets["rmq-workers"] == [f"workers:{worker_port}"]
    assert targets["rmq-exporter"] == [f"exporter:{exporter_port}"]


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


def expressions(dashboard: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    out += [v["definition"] for v in dashboard["templating"]["list"]]
    return out


def test_dashboard_uses_only_rmq_metrics() -> None:
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "rmq-overview.json").read_text())
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
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


async def test_traffic_generator(redis_url: str, namespace: str) -> None:
    async with rmq.App(make_settings(redis_url, namespace)) as app:
        assert await produce(app, rate=1000, limit=5) == 5
        found = await app.admin.query_key("orders", "order-3")
    assert [m.body["id"] for m in found] == [3]
