"""The release check: the package built as `python -m build` builds it, installed and run.

`python -m build` makes the sdist, unpacks it and builds the wheel from the unpacked sdist; so does
`release`, from a copy of the checkout (its tracked and new files, as a fresh clone has them). The
direct wheel and an editable install of the same copy must give the same `rmq.cli`. Each install
goes into a fresh venv and runs from a folder outside the repository; dependencies come from the
development environment (a `.pth` line), rmq itself only from what was built.

Run once by `make release-check` (part of `make test`), not against each server.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import rmq

pytestmark = pytest.mark.release

ROOT = Path(__file__).resolve().parent.parent
DIST = "rmq-streams"
STEM = f"rmq_streams-{rmq.__version__}"


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run `command`; on failure, fail the test with its output."""
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} exited {done.returncode}:\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")  # fmt: skip
    return done.stdout


def build(*args: str | Path) -> None:
    """`python -m build` with the development environment's setuptools (no download)."""
    run(sys.executable, "-m", "build", "--no-isolation", *args)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's files as a fresh clone has them (plus new, unignored ones)."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    copy = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # deleted but not yet staged files are still listed
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name, follow_symlinks=False)
    return copy


@dataclass(frozen=True)
class Release:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def release(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """The sdist, and the wheel built from the unpacked sdist: what `python -m build` does."""
    out = tmp_path_factory.mktemp("dist")
    build("--sdist", "--outdir", out, checkout)
    (sdist,) = out.glob("rmq_streams-*.tar.gz")
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    build("--wheel", "--outdir", out, source)
    (wheel,) = out.glob("*.whl")
    return Release(sdist, wheel)


@pytest.fixture(scope="module")
def direct_wheel(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("direct")
    build("--wheel", "--outdir", out, checkout)
    (wheel,) = out.glob("*.whl")
    return wheel


def fresh_venv(where: Path) -> Path:
    """A venv without pip whose interpreter also sees the development environment's packages."""
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def pip_install(python: Path, *args: str | Path) -> None:
    """This environment's pip, installing into `python`'s venv."""
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", *args)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def expected_wheel_files(checkout: Path) -> set[str]:
    """What the wheel must hold: rmq/ (Python, scripts, py.typed) and cli/ as rmq/cli/."""
    files = {
        p.relative_to(checkout).as_posix()
        for p in (checkout / "rmq").rglob("*")
        if p.suffix in (".py", ".lua") or p.name == "py.typed"
    }
    files |= {f"rmq/cli/{p.relative_to(checkout / 'cli').as_posix()}"
              for p in (checkout / "cli").rglob("*.py")}  # fmt: skip
    return files


# ---------------------------------------------------------------------- the built artefacts


def test_the_checkout_has_no_symlinks() -> None:
    staged = run("git", "ls-files", "-s", cwd=ROOT).splitlines()
    links = [line.split("\t", 1)[1] for line in staged if line.startswith("120000")]
    assert links == [], f"symlinks break checkouts without them (Windows): {links}"


def test_the_sdist_has_the_sources_and_the_license(release: Release) -> None:
    with tarfile.open(release.sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for name in ("LICENSE", "README.md", "pyproject.toml", "cli/main.py", "rmq/__init__.py",
                 "rmq/lua/send.lua", "rmq/py.typed"):  # fmt: skip
        assert name in names, name
    assert not any(n.startswith(("tests/", "workers/", "bench/", "compose/")) for n in names)


def test_the_wheel_from_the_sdist_holds_rmq_and_its_cli(release: Release, checkout: Path) -> None:
    wheel = zipfile.ZipFile(release.wheel)
    names = set(wheel.namelist())
    info = f"{STEM}.dist-info"
    assert release.wheel.name == f"{STEM}-py3-none-any.whl"
    assert {n.split("/")[0] for n in names} == {"rmq", info}  # no top-level cli or workers
    packaged = {n for n in names if not n.startswith(info)}
    missing = sorted(expected_wheel_files(checkout) - packaged)
    assert not missing, (
        f"not in the wheel: {missing}; add their package to [tool.setuptools] packages "
        "in pyproject.toml"
    )
    assert packaged == expected_wheel_files(checkout), sorted(
        packaged - expected_wheel_files(checkout)
    )
    assert f"{info}/licenses/LICENSE" in names
    assert b"rmq = rmq.cli.main:main" in wheel.read(f"{info}/entry_points.txt")


def test_the_wheel_metadata_names_the_distribution(release: Release) -> None:
    raw = zipfile.ZipFile(release.wheel).read(f"{STEM}.dist-info/METADATA").decode()
    meta = email.parser.Parser().parsestr(raw)
    assert meta["Name"] == DIST
    assert meta["Version"] == rmq.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert "redis-streams" in meta["Keywords"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    trove = pytest.importorskip("trove_classifiers")
    assert set(classifiers) <= trove.classifiers


def test_the_direct_wheel_is_the_same_as_the_one_from_the_sdist(
    release: Release, direct_wheel: Path
) -> None:
    def contents(path: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(path) as wheel:
            return {n: wheel.read(n) for n in wheel.namelist()}

    from_sdist, direct = contents(release.wheel), contents(direct_wheel)
    assert sorted(from_sdist) == sorted(direct)
    assert [n for n in from_sdist if from_sdist[n] != direct[n]] == []


def test_build_requirements_are_development_dependencies() -> None:
    """`--no-isolation` builds with the dev environment: it must have what the build asks for."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = project["project"]["optional-dependencies"]["dev"]
    for requirement in project["build-system"]["requires"]:
        assert requirement in dev, f"add {requirement!r} to the dev extra"


# ---------------------------------------------------------------------- installed and run


def test_the_wheel_installs_and_its_cli_runs(
    release: Release, tmp_path: Path, redis_url: str
) -> None:
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, release.wheel)
    outside = tmp_path / "elsewhere"  # not the repository: nothing importable by accident
    outside.mkdir()
    env = clean_env(RMQ_REDIS_URL=redis_url)  # --version asks the test server for its version
    rmq_command = tmp_path / "venv" / "bin" / "rmq"

    assert "Usage: rmq " in run(rmq_command, "--help", cwd=outside, env=env)
    module_help = run(python, "-m", "rmq", "--help", cwd=outside, env=env)
    assert "Usage: python -m rmq " in module_help
    assert "worker" in module_help and "topic" in module_help
    versions: list[tuple[str | Path, ...]] = [(rmq_command,), (python, "-m", "rmq")]
    for command in versions:
        out = run(*command, "--version", cwd=outside, env=env)
        assert out.startswith(f"rmq {rmq.__version__} (Python ")
        assert f"at {redis_url}" in out
    probe = (
        "import importlib.metadata as m, rmq, rmq.cli.main as cli_main;"
        f"print(m.version({DIST!r}), rmq.__file__, cli_main.__file__, sep='\\n')"
    )
    version, rmq_file, cli_file = run(python, "-c", probe, cwd=outside, env=env).split()
    assert version == rmq.__version__
    site = tmp_path / "venv" / "lib"
    assert Path(rmq_file).is_relative_to(site) and Path(cli_file).is_relative_to(site)
    assert Path(cli_file).parent.name == "cli" and Path(cli_file).parent.parent.name == "rmq"
    for name in ("cli", "workers"):
        found = subprocess.run([python, "-c", f"import {name}"], capture_output=True, cwd=outside,
                               env=env)  # fmt: skip
        assert found.returncode != 0, f"installing rmq must not provide a top-level {name!r}"


def test_an_editable_install_maps_rmq_cli_to_the_cli_folder(checkout: Path, tmp_path: Path) -> None:
    checkout = Path(shutil.copytree(checkout, tmp_path / "checkout"))  # this test edits it
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, "--no-build-isolation", "--editable", checkout)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = clean_env()

    probe = "import rmq, rmq.cli.main as m; print(rmq.__file__, m.__file__, sep='\\n')"
    rmq_file, cli_file = run(python, "-c", probe, cwd=outside, env=env).split()
    assert Path(rmq_file) == checkout / "rmq" / "__init__.py"
    assert Path(cli_file) == checkout / "cli" / "main.py"  # the sources themselves, not a copy
    assert "Usage: rmq " in run(tmp_path / "venv" / "bin" / "rmq", "--help", cwd=outside, env=env)
    (checkout / "cli" / "added_later.py").write_text("ANSWER = 42\n")
    try:
        out = run(python, "-c", "from rmq.cli.added_later import ANSWER; print(ANSWER)",
                  cwd=outside, env=env)  # fmt: skip
        assert out.strip() == "42"  # edits show without reinstalling
    finally:
        (checkout / "cli" / "added_later.py").unlink()
    for name in ("cli", "workers"):
        found = subprocess.run([python, "-c", f"import {name}"], capture_output=True, cwd=outside,
                               env=env)  # fmt: skip
        assert found.returncode != 0, f"an editable install must not provide a top-level {name!r}"
