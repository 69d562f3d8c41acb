"""The README's quickstart and its command-line section run exactly as written."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_source() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("Save this as `quickstart.py`:", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "quickstart code block not found"
    return match.group(1)


def test_quickstart_runs_as_written(tmp_path: Path, redis_url: str, namespace: str) -> None:
    (tmp_path / "quickstart.py").write_text(quickstart_source())
    env = {**os.environ, "RMQ_REDIS_URL": redis_url, "RMQ_NAMESPACE": namespace}
    env.pop("PYTHONPATH", None)
    sent = subprocess.run(
        [sys.executable, "quickstart.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.count("sent ") == 3

    rmq_command = str(Path(sys.executable).parent / "rmq")
    worker = subprocess.Popen(
        [rmq_command, "worker", "run", "quickstart:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while len([x for x in lines if x.startswith("billing order")]) < 3:
            assert time.monotonic() < deadline, lines
            lines.append(worker.stdout.readline())
        worker.send_signal(signal.SIGINT)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    billed = sorted(x.split()[2] for x in lines if x.startswith("billing order"))
    assert billed == ["0", "1", "2"]


def readme_blocks(after: str) -> list[str]:
    """The ```sh blocks of the README section whose heading is `after`."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(after, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _env_for(tmp_path: Path, redis_url: str, namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    env.pop("PYTHONPATH", None)
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "RMQ_REDIS_URL": redis_url, "RMQ_NAMESPACE": namespace,
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}  # fmt: skip


def test_cli_section_runs_as_written(tmp_path: Path, redis_url: str, namespace: str) -> None:
    """After the quickstart, every line of the Command line section's first block succeeds, in
    order, in one shell (a failing line stops it and is named)."""
    env = _env_for(tmp_path, redis_url, namespace)
    (tmp_path / "quickstart.py").write_text(quickstart_source())
    subprocess.run([sys.executable, "quickstart.py"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    block = readme_blocks("## Command line\n")[0]
    assert block.count("\n") >= 25, block
    script = "set -eE -o pipefail\ntrap 'echo \"FAILED: $BASH_COMMAND\" >&2' ERR\n" + block
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    warnings = [x for x in done.stderr.splitlines() if x.startswith("warning:")]
    assert all("AOF is off" in x for x in warnings), warnings  # rmq doctor: the test server's
    assert "topic orders grown to 8 queues" in done.stdout
    assert "billing order" not in done.stdout  # the CLI prints messages, not the handler's lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _until(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, f"{what}: exited {proc.returncode}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_cli_serving_lines_run(tmp_path: Path, redis_url: str, namespace: str) -> None:
    """The section's long-running lines: each starts (on free ports, the only change), serves,
    and drains on SIGTERM with exit 0; `worker check` says the worker is alive meanwhile."""
    env = _env_for(tmp_path, redis_url, namespace)
    (tmp_path / "quickstart.py").write_text(quickstart_source())
    lines = [
        shlex.split(x, comments=True) for x in readme_blocks("## Command line\n")[1].splitlines()
    ]
    worker, check, exporter = [x for x in lines if x]
    assert worker[:3] == ["rmq", "worker", "run"] and check[:3] == ["rmq", "worker", "check"]
    ports = {w: str(_free_port()) for w in ("9464", "9465", "9466")}
    worker = [ports.get(w, w) for w in worker]
    exporter = [ports.get(w, w) for w in exporter]
    procs = []
    try:
        run = subprocess.Popen(worker, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(run)
        health = int(ports["9465"])
        _until(lambda: _get(health, "/readyz")[0] == 200, "the workers ready", run)
        assert subprocess.run(check, cwd=tmp_path, env=env, capture_output=True).returncode == 0
        assert "rmq_messages_consumed_total" in _get(int(ports["9464"]), "/metrics")[1]
        serve = subprocess.Popen(exporter, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(serve)
        state = int(ports["9466"])
        _until(lambda: "rmq_redis_up 1.0" in _get(state, "/metrics")[1], "the exporter", serve)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(60) == 0, proc.communicate()[1]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
