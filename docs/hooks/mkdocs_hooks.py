"""MkDocs hooks (`hooks:` in mkdocs.yml): add the reference pages generated from the code.

The pages come from `docs/hooks/reference.py`; they exist only in the build (never in the
repository), so they cannot go stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from docs.hooks.reference import PAGES  # noqa: E402


def on_files(files: Files, config: Any) -> Files:
    """Add every generated reference page to the site's files."""
    for path, render in PAGES.items():
        files.append(File.generated(config, path, content=render()))
    return files
