"""The pages show code only from snippet files, and every snippet file is shown somewhere.

Fenced code blocks in docs/*.md hold nothing but `--8<--` include lines (pymdownx.snippets), so
the code a reader sees is the code the tests run (test_snippets.py, test_cli_lines.py,
test_quickstart.py). Blocks marked `text` (key layouts, output, trees) are not code.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.docs.conftest import DOCS, INCLUDE, ROOT, SNIPPETS, pages

FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
SECTION = re.compile(r"--8<-- \[start:([\w-]+)\]")


def includes() -> list[tuple[Path, str, str | None]]:
    """(page, included file, section or None) for every include line of every page."""
    out = []
    for page in pages():
        for target in INCLUDE.findall(page.read_text()):
            name, _, section = target.partition(":")
            out.append((page, name, section or None))
    return out


def resolve(name: str) -> Path:
    """Where pymdownx.snippets finds `name` (its base_path: docs/snippets, then the repo)."""
    for base in (SNIPPETS, ROOT):
        if (base / name).is_file():
            return base / name
    raise AssertionError(f"included file {name!r} not found")


def test_code_blocks_are_includes_only() -> None:
    for page in pages():
        for block in FENCE.finditer(page.read_text()):
            if block["lang"] == "text":
                continue
            lines = [line for line in block["body"].splitlines() if line.strip()]
            assert lines, f"{page.name}: empty code block"
            for line in lines:
                assert INCLUDE.match(line), (
                    f"{page.relative_to(DOCS)}: code must come from a snippet file, found {line!r}"
                )


def test_every_include_exists_with_its_section() -> None:
    found = includes()
    assert len(found) > 20
    for page, name, section in found:
        path = resolve(name)
        if section:
            text = path.read_text()
            assert f"[start:{section}]" in text and f"[end:{section}]" in text, (page, name)


def test_every_snippet_file_is_shown() -> None:
    shown = {resolve(name) for _, name, _ in includes()}
    for path in sorted(SNIPPETS.rglob("*")):
        if path.suffix in (".py", ".sh"):
            assert path in shown, f"{path.relative_to(SNIPPETS)} is on no page"


def test_every_section_of_a_snippet_is_shown() -> None:
    shown = {(resolve(name), section) for _, name, section in includes()}
    for path in sorted(SNIPPETS.rglob("*")):
        if path.suffix not in (".py", ".sh"):
            continue
        for section in SECTION.findall(path.read_text()):
            assert (path, section) in shown or (path, None) in shown, (path.name, section)


def test_every_page_is_in_the_nav() -> None:
    nav = str(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    for page in pages():
        assert str(page.relative_to(DOCS)) in nav, f"{page.name} is not in mkdocs.yml's nav"


def test_the_readme_links_the_site() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\((docs/[^)#]+\.md)", section)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link
