"""The quickstart page runs as written: its program, then its two command lines."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.docs.conftest import SNIPPETS, snippet_env
from tests.docs.test_cli_lines import command_lines


def test_quickstart_runs_as_written(tmp_path: Path, redis_url: str, namespace: str) -> None:
    shutil.copy(SNIPPETS / "quickstart.py", tmp_path / "quickstart.py")
    send, worker_line = command_lines(SNIPPETS / "quickstart.sh")
    assert send == ["python", "quickstart.py"]
    assert worker_line == ["rmq", "worker", "run", "quickstart:app"]
    env = snippet_env(redis_url, namespace)
    python, rmq_command = sys.executable, str(Path(sys.executable).parent / "rmq")

    sent = subprocess.run(
        [python, *send[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.count("sent ") == 3

    worker = subprocess.Popen(
        [rmq_command, *worker_line[1:]], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while len([x for x in lines if x.startswith("billing order")]) < 3:
            assert time.monotonic() < deadline, lines
            lines.append(worker.stdout.readline())
        worker.send_signal(signal.SIGINT)  # "Ctrl-C drains and exits"
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    billed = sorted(x.split()[2] for x in lines if x.startswith("billing order"))
    assert billed == ["0", "1", "2"], shlex.join(lines)
