"""The built wheel: what it contains, and that `rmq` and `python -m rmq` work from it."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import rmq
from rmq.scripts import SCRIPT_NAMES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("rmq-*.whl")
    return path


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"rmq", f"rmq-{rmq.__version__}.dist-info"}, top_level
    for script in SCRIPT_NAMES:
        assert f"rmq/lua/{script}.lua" in names
    assert "rmq/py.typed" in names
    assert "rmq/cli/main.py" in names
    assert not any(n.startswith(("cli/", "workers/", "tests/", "bench/")) for n in names)
    entry_points = zipfile.ZipFile(wheel).read(f"rmq-{rmq.__version__}.dist-info/entry_points.txt")
    assert b"rmq = rmq.cli.main:main" in entry_points


def test_console_script_and_module_work_from_the_wheel(
    wheel: Path, tmp_path: Path, redis_url: str
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # Dependencies come from the development environment; rmq itself only from the wheel.
    deps = [
        p for p in [*site.getsitepackages(), sysconfig.get_path("purelib")] if "site-packages" in p
    ]
    Path(purelib, "deps.pth").write_text("\n".join(sorted(set(deps))) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    cwd = tmp_path  # not the repository: nothing importable by accident
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RMQ_REDIS_URL"] = redis_url  # --version asks the server its version: the test server
    where = subprocess.run(
        [str(python), "-c", "import rmq, sys; print(rmq.__file__)"],
        check=True, capture_output=True, text=True, cwd=cwd, env=env,
    ).stdout  # fmt: skip
    assert where.startswith(purelib), where
    for command in (
        [str(env_dir / "bin" / "rmq"), "--version"],
        [str(python), "-m", "rmq", "--version"],
    ):
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=cwd, env=env)
        assert out.stdout.startswith(f"rmq {rmq.__version__}")
        assert f"at {redis_url}" in out.stdout
    for name in ("cli", "workers"):
        probe = subprocess.run(
            [str(python), "-c", f"import {name}"], capture_output=True, cwd=cwd, env=env
        )
        assert probe.returncode != 0, f"the wheel must not provide a top-level {name!r} package"
