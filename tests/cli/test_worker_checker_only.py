"""`rmq worker run` accepts an app with only transaction checkers (and refuses an empty one)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.conftest import subprocess_env

APP = """
import rmq

app = rmq.App()

@app.transaction_checker(group="order-service")
def check(msg: rmq.Message) -> rmq.TransactionState:
    return rmq.TransactionState.COMMIT
"""


def test_checker_only_app_runs(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "checker_app.py").write_text(APP)
    (tmp_path / "empty_app.py").write_text("import rmq\napp = rmq.App()\n")
    run_env = subprocess_env(env)
    empty = subprocess.run(
        [sys.executable, "-m", "rmq", "worker", "run", "empty_app:app"],
        cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert empty.returncode == 2
    assert "no consumers and no transaction checkers" in empty.stderr
    worker = subprocess.Popen(
        [sys.executable, "-m", "rmq", "worker", "run", "checker_app:app"],
        cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2.0)
        assert worker.poll() is None, worker.communicate()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
