"""Producer faults: a reset while a send's reply is on its way, and a Redis gone silent."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

import rmq
from rmq.keys import NamespaceKeys
from tests.faults import Report, fault_settings
from tests.proxy import FaultProxy

pytestmark = pytest.mark.timeout(60)

TOPIC = "orders"


def stored(client: redis.Redis, namespace: str, queues: int = 4) -> list[tuple[str, str]]:
    """(msg_id, entry id) of every entry of the topic, over all queues."""
    keys = NamespaceKeys(namespace)
    out = []
    for q in range(queues):
        for entry_id, fields in client.xrange(keys.queue(TOPIC, q).stream):
            out.append((fields[b"i"].decode(), entry_id.decode()))
    return out


async def test_reset_during_the_reply_stores_each_send_once(
    proxy: FaultProxy, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Every third send (and one batch of 50) loses its connection to a reset after Redis ran
    the send script and before its reply arrived. The producer retries on a new connection; the
    send script's dedup record answers the retry with the entry ids it already wrote: each
    message is stored once and each caller gets one result, with the right offset."""
    report = Report("reset during a send's reply")
    results: list[rmq.SendResult] = []
    async with rmq.App(fault_settings(proxy.url, namespace)) as app:
        for n in range(30):
            if n % 3 == 0:
                proxy.reset_reply("EVALSHA")
            results.append(await app.send(TOPIC, {"n": n}))
        proxy.reset_reply("EVALSHA")
        results += await app.send_batch(TOPIC, [{"b": n} for n in range(50)])
    report.sent = len(results)
    report.extra["resets"] = proxy.stats.triggers.get("reset_reply", 0)
    assert report.extra["resets"] == 11
    rows = stored(client, namespace)
    by_id = dict(rows)
    report.acknowledged = len({r.msg_id for r in results})
    report.extra["stored"] = len(rows)
    report.duplicated = len(rows) - len(by_id)
    report.lost = len({r.msg_id for r in results} - set(by_id))
    report.write(tmp_path)
    assert report.acknowledged == 80
    assert report.lost == 0 and report.duplicated == 0 and len(rows) == 80
    assert all(by_id[r.msg_id] == r.offset for r in results)


async def test_sends_to_a_silent_redis_fail_in_bounded_time(
    proxy: FaultProxy, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Redis goes silent (half-open: connections accepted, nothing ever answered). Each send
    gives up with BrokerUnavailable within send_timeout, the second one too: its new connection's
    handshake runs inside the deadline (it used to wait as long as Redis stayed silent). After
    the link heals, sending works again on a new connection."""
    report = Report("Redis silent during sends (half-open)")
    settings = fault_settings(proxy.url, namespace)
    took: list[float] = []
    async with rmq.App(settings) as app:
        await app.send(TOPIC, "before")
        proxy.blackhole()
        for n in range(2):
            started = time.monotonic()
            with pytest.raises(rmq.BrokerUnavailable, match="may or may not be stored"):
                await app.send(TOPIC, f"silent {n}")
            took.append(time.monotonic() - started)
        proxy.heal()
        started = time.monotonic()
        await app.send(TOPIC, "after")
        report.recovery_seconds = time.monotonic() - started
    report.sent, report.acknowledged, report.failed_sends = 4, 2, 2
    report.extra["failed_send_seconds"] = [round(t, 3) for t in took]
    rows = stored(client, namespace)
    report.extra["stored"] = len(rows)
    report.write(tmp_path)
    assert all(t < settings.send_timeout + 1.0 for t in took), took
    assert len(rows) == 2  # the silent link forwarded nothing: the failed sends were not stored


async def test_reset_during_the_reply_of_a_large_chunk_stores_it_once(
    proxy: FaultProxy, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Large bodies go in one MULTI of plain XADDs (mark_sent records the chunk first). A reset
    after Redis ran the EXEC and before its reply arrived: the retry goes through the send
    script, which finds the chunk from the record and answers with its entry ids."""
    report = Report("reset during a large chunk's reply (MULTI)")
    body = os.urandom(40_000)  # incompressible: stored as it is
    results: list[rmq.SendResult] = []
    async with rmq.App(fault_settings(proxy.url, namespace)) as app:
        for n in range(6):
            if n % 2 == 0:
                proxy.reset_reply("EXEC")
            results += await app.send_batch(TOPIC, [body + bytes([n, k]) for k in range(3)])
    report.sent = len(results)
    report.extra["resets"] = proxy.stats.triggers.get("reset_reply", 0)
    assert report.extra["resets"] == 3
    rows = stored(client, namespace)
    by_id = dict(rows)
    report.acknowledged = len({r.msg_id for r in results})
    report.duplicated = len(rows) - len(by_id)
    report.lost = len({r.msg_id for r in results} - set(by_id))
    report.write(tmp_path)
    assert report.lost == 0 and report.duplicated == 0 and len(rows) == 18
    assert all(by_id[r.msg_id] == r.offset for r in results)
