"""The README's quickstart runs exactly as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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
