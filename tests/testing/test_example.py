"""rmq.testing used as a user would: example/ is a project with its own root conftest.py that loads
the plugin, run here in a pytest process of its own."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parent / "example"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_files() -> dict[str, str]:
    """The files of the README's "Testing your handlers" example: code blocks that start with a
    `# path` comment."""
    section = README.read_text().split("## Testing your handlers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", section, re.S)
    return dict(blocks)


def test_the_readme_example_passes_as_written(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    files = readme_files()
    assert set(files) == {"conftest.py", "myservice/worker.py", "tests/test_billing.py"}
    for name, text in files.items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(text)
    monkeypatch.setenv("RMQ_TEST_REDIS_URL", redis_url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", "-q")
    result.assert_outcomes(passed=1)


def test_the_example_project_passes_against_a_server_it_starts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for source in EXAMPLE.glob("*.py"):
        shutil.copy(source, pytester.path / source.name)
    monkeypatch.delenv("RMQ_TEST_REDIS_URL", raising=False)  # rmq_server starts one
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", "-q")
    result.assert_outcomes(passed=5)


def test_the_plugin_is_opt_in(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Installing rmq adds no fixtures to a project that did not ask for them."""
    monkeypatch.setenv("RMQ_TEST_REDIS_URL", redis_url)  # a server the project's CI runs
    pytester.makepyfile(
        test_plain=f"""
def test_uses_it(rmq_app):
    assert rmq_app.settings.redis_url == {redis_url!r}
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'rmq_app' not found*"])
    loaded = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "rmq.testing")
    loaded.assert_outcomes(passed=1)


def test_importing_rmq_testing_does_not_import_pytest() -> None:
    probe = "import sys, rmq.testing; print('pytest' in sys.modules, '_pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
