"""`rmq doctor`: is the server rmq points at one that keeps messages?

`diagnose(ctx)` reads `INFO server`, `memory` and `persistence` of every node (the one server, or
each Redis Cluster primary) and warns, never fails, about what loses or refuses messages:

- `maxmemory-policy` other than `noeviction`: a full Redis evicts keys (whole streams, pending
  lists, dead letters) instead of refusing writes;
- AOF off (`appendonly no`): a restart loses every message since the last RDB snapshot (or all of
  them without one);
- a server older than Redis 7.0: rmq needs 7.0 (XAUTOCLAIM's deleted ids, consumer-group lag,
  script flags).

It also reports each node's version, memory used and limit, and with `route(ctx, info)` which
node and hash slot each queue of a topic lives on (RocketMQ's topicRoute). Workers log the same
warnings once when they start (`log_startup_warnings`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.crc import key_slot

from .context import Context
from .settings import redact_url, unknown_variables
from .topics import TopicInfo

__all__ = [
    "NodeReport",
    "QueueRoute",
    "diagnose",
    "log_startup_warnings",
    "node_warnings",
    "route",
]

log = logging.getLogger("rmq.doctor")

MIN_VERSION = (7, 0)


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One server (or cluster primary): what it runs and what about it may lose messages."""

    node: str
    server: str
    """"redis" or "valkey"."""
    version: str
    mode: str
    """"standalone", "cluster" or "sentinel"."""
    used_memory_bytes: int | None
    maxmemory_bytes: int | None
    """None: no limit (`maxmemory 0`)."""
    maxmemory_policy: str | None
    aof_enabled: bool | None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueRoute:
    """Where one queue of a topic lives."""

    queue_id: int
    slot: int
    node: str


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def node_warnings(info: Mapping[str, Any]) -> list[str]:
    """What in one node's INFO may lose or refuse messages (empty: nothing)."""
    out = []
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        out.append(
            f"maxmemory-policy is {policy}: a full Redis evicts keys (streams, pending lists, "
            "dead letters) and loses messages; set maxmemory-policy noeviction"
        )
    if _int(info.get("aof_enabled")) == 0:
        out.append(
            "AOF is off (appendonly no): a restart loses the messages written since the last "
            "RDB snapshot; set appendonly yes (appendfsync everysec or always)"
        )
    name = str(info.get("server_name") or "redis")
    version = str(info.get("redis_version", "0"))
    if name == "redis" and _version(version) < MIN_VERSION:
        out.append(f"Redis {version} is older than 7.0, which rmq needs (XAUTOCLAIM, lag)")
    return out


def _report(node: str, info: Mapping[str, Any]) -> NodeReport:
    name = str(info.get("server_name") or "redis")
    version = str(info.get(f"{name}_version") or info.get("redis_version", "?"))
    maxmemory = _int(info.get("maxmemory"))
    aof = _int(info.get("aof_enabled"))
    return NodeReport(
        node=node,
        server=name,
        version=version,
        mode=str(info.get("redis_mode", "standalone")),
        used_memory_bytes=_int(info.get("used_memory")),
        maxmemory_bytes=maxmemory or None,
        maxmemory_policy=None if "maxmemory_policy" not in info else str(info["maxmemory_policy"]),
        aof_enabled=None if aof is None else bool(aof),
        warnings=node_warnings(info),
    )


async def diagnose(ctx: Context) -> list[NodeReport]:
    """A report per node (the server, or every cluster primary), in the router's order."""
    out = []
    for node in ctx.conn.router.nodes:
        info: dict[str, Any] = {}
        for section in ("server", "memory", "persistence"):
            info.update(await node.client.info(section))
        name = node.name if ctx.conn.cluster else redact_url(ctx.settings.redis_url)
        out.append(_report(name, info))
    return out


def route(ctx: Context, info: TopicInfo) -> list[QueueRoute]:
    """The hash slot and node of each queue of `info` (every key of a queue shares its slot)."""
    routes = []
    for q in range(info.queues):
        stream = ctx.keys.queue(info.name, q).stream
        node = ctx.conn.router.node_for(stream).name
        shown = node if ctx.conn.cluster else redact_url(ctx.settings.redis_url)
        routes.append(QueueRoute(q, key_slot(stream.encode()), shown))
    return routes


_warned = False


async def log_startup_warnings(ctx: Context) -> None:
    """Log, once per process, what `rmq doctor` warns about, and unknown `RMQ_*` variables."""
    global _warned
    if _warned:
        return
    _warned = True
    for problem in unknown_variables():
        log.warning("%s", problem)
    try:
        reports = await diagnose(ctx)
    except Exception as exc:  # a server that refuses INFO (an ACL, a managed service)
        log.info("could not check the server (rmq doctor): %r", exc)
        return
    for report in reports:
        for warning in report.warnings:
            log.warning("%s (%s)", warning, report.node, extra={"node": report.node})
