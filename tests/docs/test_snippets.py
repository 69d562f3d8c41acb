"""Every Python snippet of the documentation runs, against a real server, and checks itself.

Pages include code only from files in docs/snippets/ (see test_pages.py); each `*.py` there is a
complete program that asserts what the page says about it, run here as a subprocess in its own
namespace. `*_before.py` files show other frameworks' code (Celery, Dramatiq, RocketMQ's client)
for the migration guide: those frameworks are not dependencies, so they are compiled, not run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.conftest import SNIPPETS, snippet_env

RUN = sorted(
    p
    for p in SNIPPETS.rglob("*.py")
    if not p.name.endswith("_before.py") and p.name != "quickstart.py"  # test_quickstart.py
)
BEFORE = sorted(SNIPPETS.rglob("*_before.py"))


def _id(path: Path) -> str:
    return str(path.relative_to(SNIPPETS))


def test_there_are_snippets() -> None:
    assert len(RUN) >= 10 and BEFORE


@pytest.mark.parametrize("path", RUN, ids=_id)
def test_snippet_runs(path: Path, redis_url: str, namespace: str) -> None:
    done = subprocess.run(
        [sys.executable, path.name], cwd=path.parent, env=snippet_env(redis_url, namespace),
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("path", BEFORE, ids=_id)
def test_other_frameworks_code_compiles(path: Path) -> None:
    compile(path.read_text(), str(path), "exec")
