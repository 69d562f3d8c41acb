"""rmq doctor: warnings about what loses messages, per node; workers log them once at start."""

from __future__ import annotations

import logging

import pytest
import redis

import rmq
from rmq import doctor
from rmq.doctor import diagnose, node_warnings, route
from tests.helpers import running


def test_node_warnings() -> None:
    safe = {"maxmemory_policy": "noeviction", "aof_enabled": 1, "redis_version": "7.2.4"}
    assert node_warnings(safe) == []
    risky = {"maxmemory_policy": "allkeys-lru", "aof_enabled": 0, "redis_version": "6.2.14"}
    found = node_warnings(risky)
    assert len(found) == 3
    assert "allkeys-lru" in found[0] and "noeviction" in found[0]
    assert "AOF is off" in found[1]
    assert "6.2.14 is older than 7.0" in found[2]
    valkey = {"server_name": "valkey", "redis_version": "7.2.4", "aof_enabled": 1}
    assert node_warnings(valkey) == []


async def test_diagnose_the_test_server(opened: rmq.App, r: redis.Redis) -> None:
    (report,) = await diagnose(opened.context)
    assert report.server in ("redis", "valkey") and report.version[0].isdigit()
    assert report.aof_enabled is False  # the suite's servers run with --appendonly no
    assert any("AOF is off" in w for w in report.warnings)
    info, _ = await opened.admin.create_topic("orders", queues=3)
    routes = route(opened.context, info)
    assert [q.queue_id for q in routes] == [0, 1, 2]
    assert len({q.slot for q in routes}) == 3  # one hash tag per queue


async def test_workers_log_the_warnings_once(
    app: rmq.App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "_warned", False)

    @app.consumer("orders", group="billing")
    async def handle(msg: rmq.Message) -> None:
        return None

    caplog.set_level(logging.WARNING, logger="rmq.doctor")
    async with running(app):
        pass
    async with running(app):
        pass
    aof = [r for r in caplog.records if "AOF is off" in r.getMessage()]
    assert len(aof) == 1
