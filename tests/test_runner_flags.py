"""`rmq worker run` flags, as real processes: --burst, --only, --factory, --reload, and a
startup hook that fails (exit 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

import rmq
from tests.helpers import make_settings

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.apps.lifecycle_app:app"


def worker_env(redis_url: str, namespace: str, out: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "LIFECYCLE_"))}
    env.update(
        RMQ_REDIS_URL=redis_url, RMQ_NAMESPACE=namespace, RMQ_BLOCK_SECONDS="0.3",
        RMQ_SHUTDOWN_GRACE="5", RMQ_STARTUP_TIMEOUT="5", RMQ_HEARTBEAT_INTERVAL="0.2",
        RMQ_RESTART_DELAY="0.1", LIFECYCLE_OUT=str(out), PYTHONUNBUFFERED="1", **extra,
    )  # fmt: skip
    return env


def rmq_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rmq", "worker", "run", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def send(redis_url: str, namespace: str, per_topic: int) -> dict[str, set[str]]:
    """Declare the lifecycle app's groups, then send `per_topic` messages to each topic."""
    from tests.apps import lifecycle_app

    async def main() -> dict[str, set[str]]:
        app = lifecycle_app.create_app()
        app.settings = make_settings(redis_url, namespace)
        sent: dict[str, set[str]] = {}
        async with app:
            for topic in ("jobs", "other"):
                results = await app.send_batch(topic, list(range(per_topic)))
                sent[topic] = {r.msg_id for r in results}
        return sent

    return anyio.run(main)


def lines(out: Path) -> list[list[str]]:
    return [line.split() for line in out.read_text().splitlines()] if out.exists() else []


def handled(out: Path) -> Counter[tuple[str, str]]:
    """(consumer, msg_id) -> times handled."""
    return Counter((w[0], w[1]) for w in lines(out) if "/" in w[0])


def test_burst_consumes_everything_then_exits_0_with_the_hooks_once(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    sent = send(redis_url, namespace, 50)
    out = tmp_path / "out"
    done = rmq_worker(worker_env(redis_url, namespace, out), APP, "--burst")
    assert done.returncode == 0, done.stderr
    assert "burst: nothing left to consume" in done.stderr
    counts = handled(out)
    for consumer, topic in (("jobs/a", "jobs"), ("jobs/b", "jobs"), ("other/c", "other")):
        assert {m for c, m in counts if c == consumer} == sent[topic]
    events = [w[0] for w in lines(out) if "/" not in w[0]]
    assert events == ["startup", "shutdown"]  # once each, around every handler call
    assert lines(out)[0][0] == "startup" and lines(out)[-1][0] == "shutdown"


def test_burst_only_runs_the_named_consumers(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    sent = send(redis_url, namespace, 20)
    out = tmp_path / "out"
    env = worker_env(redis_url, namespace, out)
    done = rmq_worker(env, APP, "--burst", "--only", "jobs/b", "--only", "other")
    assert done.returncode == 0, done.stderr
    consumers = {c for c, _ in handled(out)}
    assert consumers == {"jobs/b", "other/c"}
    assert {m for c, m in handled(out) if c == "jobs/b"} == sent["jobs"]
    bad = rmq_worker(env, APP, "--only", "jobs/zzz")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --only: 'jobs/zzz' matches no consumer of this app (it has: jobs/a, jobs/b, "
        "other/c)"
    ]


def test_burst_with_two_processes_exits_when_both_are_done(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    sent = send(redis_url, namespace, 200)
    out = tmp_path / "out"
    done = rmq_worker(worker_env(redis_url, namespace, out), APP, "--burst", "--processes", "2")
    assert done.returncode == 0, done.stderr
    assert "restarting in" not in done.stderr
    assert {m for c, m in handled(out) if c == "jobs/a"} == sent["jobs"]
    assert [w[0] for w in lines(out)].count("startup") == 2  # once per worker process


def test_factory(redis_url: str, namespace: str, tmp_path: Path) -> None:
    sent = send(redis_url, namespace, 5)
    out = tmp_path / "out"
    env = worker_env(redis_url, namespace, out)
    target = "tests.apps.lifecycle_app:create_app"
    done = rmq_worker(env, target, "--factory", "--burst", "--only", "other")
    assert done.returncode == 0, done.stderr
    assert {m for c, m in handled(out)} == sent["other"]
    plain = rmq_worker(env, target)
    assert plain.returncode == 2
    assert "use --factory if it returns one" in plain.stderr
    not_callable = rmq_worker(env, APP, "--factory")
    assert not_callable.returncode == 2 and "is not callable" in not_callable.stderr


def test_a_failing_startup_hook_exits_4_with_one_line(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    send(redis_url, namespace, 3)
    out = tmp_path / "out"
    env = worker_env(redis_url, namespace, out, LIFECYCLE_FAIL="1")
    for args in ((), ("--processes", "2")):
        done = rmq_worker(env, APP, *args)
        assert done.returncode == 4, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.endswith(
            f"cannot start {APP}: startup hook create_app.<locals>.open_database failed: "
            "RuntimeError: database down"
        ), done.stderr
        assert "Traceback" not in done.stderr
    assert handled(out) == Counter()


def test_reload_restarts_the_worker_when_its_code_changes(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = textwrap.dedent(
        """
        import os
        import rmq

        from . import helpers

        app = rmq.App()
        VERSION = {version}

        @app.on_startup
        def started() -> None:
            helpers.record(f"startup {{os.getpid()}} v{{VERSION}}")

        @app.consumer("jobs", group="a")
        async def handle(msg: rmq.Message) -> None: ...
        """
    )
    (package / "worker.py").write_text(source.format(version=1))
    (package / "helpers.py").write_text(
        "import os\n\ndef record(line):\n"
        "    with open(os.environ['LIFECYCLE_OUT'], 'a') as f:\n        f.write(line + '\\n')\n"
    )
    out = tmp_path / "out"
    env = worker_env(redis_url, namespace, out)
    env["PYTHONPATH"] = str(ROOT)  # rmq itself; the app is found from the working directory
    log = (tmp_path / "log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rmq", "worker", "run", "shop.worker:app", "--reload",
         "--reload-delay", "0.1"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def startups() -> list[list[str]]:
        return [w for w in lines(out) if w[0] == "startup"]

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(startups()) < count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "log").read_text())
            time.sleep(0.05)

    try:
        wait_for(1)
        time.sleep(0.3)
        (package / "worker.py").write_text(source.format(version=2))
        wait_for(2)
        (package / "helpers.py").write_text((package / "helpers.py").read_text() + "\n# edit\n")
        wait_for(3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    first, second, third = startups()
    assert (first[2], second[2], third[2]) == ("v1", "v2", "v2")
    assert len({first[1], second[1], third[1]}) == 3  # a new process each time
    text = (tmp_path / "log").read_text()
    assert "changed: worker.py: restarting the worker" in text
    assert "changed: helpers.py: restarting the worker" in text


def test_reload_of_a_missing_module_is_a_usage_error(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    done = rmq_worker(worker_env(redis_url, namespace, tmp_path / "o"), "nowhere:app", "--reload")
    assert done.returncode == 2
    assert "no module named 'nowhere'" in done.stderr


def test_sent_messages_are_not_lost_by_a_burst_run(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Nothing pending after a burst run: what it took, it acknowledged."""
    send(redis_url, namespace, 30)
    out = tmp_path / "out"
    assert rmq_worker(worker_env(redis_url, namespace, out), APP, "--burst").returncode == 0

    async def lags() -> dict[str, tuple[int | None, int]]:
        async with rmq.App(make_settings(redis_url, namespace)) as app:
            return {
                f"{g.topic}/{g.group}": (g.lag, g.pending)
                for t in ("jobs", "other")
                for g in await app.admin.groups(t)
            }

    assert anyio.run(lags) == {"jobs/a": (0, 0), "jobs/b": (0, 0), "other/c": (0, 0)}
