"""Fixtures: a CliRunner bound to the test server and a fresh namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from rmq.cli.main import app
from rmq.cli.output import SCHEMA_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]

Invoke = Callable[..., Result]


@pytest.fixture
def env(redis_url: str, namespace: str) -> dict[str, str]:
    """RMQ_* variables for the test server and namespace (others from the caller dropped)."""
    return {
        "RMQ_REDIS_URL": redis_url,
        "RMQ_NAMESPACE": namespace,
        "RMQ_STARTUP_TIMEOUT": "0.3",
    }


@pytest.fixture
def cli(env: dict[str, str]) -> Invoke:
    """`cli(*args, input=None, code=0)`: run `rmq args...` in-process; assert the exit code."""
    runner = CliRunner()
    base = env
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RMQ_")}

    def invoke(
        *args: str,
        input: str | bytes | None = None,
        code: int | None = 0,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> Result:
        result = runner.invoke(
            app, list(args), env={**cleared, **(env or base)}, input=input, **extra
        )
        if code is not None:
            assert result.exit_code == code, (
                f"exit {result.exit_code} != {code}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}\n{result.exception!r}"
            )
        return result

    return invoke


def as_json(result: Result) -> Any:
    """The command's JSON document, without its `schema_version` (checked here)."""
    doc = orjson.loads(result.stdout)
    assert doc.pop("schema_version") == SCHEMA_VERSION, doc
    return doc


def subprocess_env(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    base.pop("PYTHONPATH", None)
    return {**base, **env}


def run_rmq(
    args: Sequence[str], env: dict[str, str], input: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    """`python -m rmq args...` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "rmq", *args], env=subprocess_env(env), cwd=REPO_ROOT,
        input=input, capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip


def run_many(
    commands: Sequence[Sequence[str]],
    env: dict[str, str],
    timeout: float = 60,
    envs: Sequence[dict[str, str] | None] | None = None,
) -> list[subprocess.CompletedProcess[bytes]]:
    """Several `python -m rmq` subprocesses at once (each takes about a second to start);
    `envs[i]`, when given, replaces `env` for command i."""
    chosen = list(envs or [None] * len(commands))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rmq", *args],
            env=subprocess_env(own or env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args, own in zip(commands, chosen, strict=True)
    ]
    out = []
    for args, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(list(args), proc.returncode, stdout, stderr))
    return out
