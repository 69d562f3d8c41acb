"""Shared by the documentation tests: where the docs live, and how a snippet runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
INCLUDE = re.compile(r'^\s*-{1,}8<-{1,}\s+"([^"]+)"\s*$', re.M)
"""A pymdownx.snippets include line: --8<-- "file" or --8<-- "file:section"."""


def pages() -> list[Path]:
    """Every hand-written page of the site."""
    return sorted(p for p in DOCS.rglob("*.md") if SNIPPETS not in p.parents)


def snippet_env(redis_url: str, namespace: str) -> dict[str, str]:
    """The environment a snippet runs in: the test server, its own namespace, short timeouts
    (what a reader gets by exporting RMQ_* variables; the snippets themselves use defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    env.pop("PYTHONPATH", None)
    return {
        **env,
        "RMQ_REDIS_URL": redis_url,
        "RMQ_NAMESPACE": namespace,
        "RMQ_STARTUP_TIMEOUT": "5",
        "RMQ_BLOCK_SECONDS": "0.5",
        "RMQ_SHUTDOWN_GRACE": "5",
        "RMQ_TRANSACTION_CHECK_IMMUNITY": "1",
        "RMQ_TRANSACTION_CHECK_INTERVAL": "1",
    }
