"""A poison handler kills its worker process (os._exit, a segfault) on one message: after the
message's delivery count passes `max_deliveries` it is dead-lettered (reason `max_deliveries`)
without calling the handler again, instead of killing worker processes forever. The supervisor
restarts the crashed processes meanwhile, and every other message is handled."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import rmq
from rmq.embedded import EmbeddedServer
from tests.apps.poison import GROUP, MAX_DELIVERIES
from tests.chaos import REPO_ROOT, Records, wait_for, worker_env
from tests.faults import Report
from tests.helpers import make_settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TOPIC = "chaos"


async def test_poison_messages_that_kill_their_process_are_dead_lettered(
    server_factory: type[EmbeddedServer], namespace: str, tmp_path: Path
) -> None:
    server = server_factory().start()
    settings = make_settings(
        server.url, namespace, default_queues=1, visibility_timeout=1.5, claim_interval=0.3,
        block_seconds=0.3, restart_delay=0.1, restart_delay_cap=0.5, heartbeat_interval=0.5,
    )  # fmt: skip
    out = tmp_path / "poison.records"
    log = tmp_path / "supervisor.log"
    app = rmq.App(settings)
    async with app:
        bodies: list[object] = [*range(30), "exit", *range(30, 60), "segfault", *range(60, 90)]
        results = [await app.send(TOPIC, body) for body in bodies]
        poison = {r.msg_id for r, b in zip(results, bodies, strict=True) if isinstance(b, str)}
        normal = {r.msg_id for r in results} - poison
        env = worker_env(settings, RECORDER_OUT=out)
        started = time.monotonic()
        with log.open("wb") as log_file:
            supervisor = subprocess.Popen(
                [sys.executable, "-m", "rmq", "worker", "run", "tests.apps.poison:app",
                 "--processes", "2"],
                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        dlq = app.dead_letters(TOPIC, GROUP)
        try:
            await wait_for(lambda: Records.read(out).done_ids >= normal, 60, "every normal message")
            deadline = time.monotonic() + 30
            while await dlq.count() < len(poison):
                assert time.monotonic() < deadline, log.read_text()
                await anyio.sleep(0.2)
            took = time.monotonic() - started
            letters = await dlq.entries()
            assert supervisor.poll() is None, "the supervisor gave up"
        finally:
            supervisor.send_signal(signal.SIGTERM)
            code = supervisor.wait(30)
    text = log.read_text(errors="replace")
    records = Records.read(out)
    crashes = text.count("; restarting in")
    report = Report("poison handler kills its process (os._exit, segfault)")
    report.sent = report.acknowledged = len(results)
    report.handled = len(records.done_ids & normal)
    report.lost = len(normal - records.done_ids)
    report.duplicated = sum(n - 1 for n in records.dones.values() if n > 1)
    report.recovery_seconds = took
    report.extra.update(
        process_crashes=crashes,
        poison_deliveries={m: records.starts[m] for m in sorted(poison)},
        dead_lettered=len(letters),
    )
    report.write(tmp_path)
    assert code == 0, text[-3000:]
    assert {d.msg_id for d in letters} == poison
    assert {d.reason for d in letters} == {"max_deliveries"}
    assert report.lost == 0
    # each poison message killed a process once per delivery up to the limit, then no more
    assert all(records.starts[m] == MAX_DELIVERIES for m in poison), report.extra
    assert crashes == MAX_DELIVERIES * len(poison), text[-3000:]
    assert "exited with 17" in text and "exited with -11" in text
    assert report.duplicated <= crashes  # a dying process held only its poison message
