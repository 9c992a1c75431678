"""Metadata a person wants to see in the UI: Markdown tables, inline images, versions."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg


def png_markdown(path: str | Path, alt: str) -> dg.MetadataValue:
    """An image the asset page shows inline (a data URI, so it renders wherever the UI runs)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def short_hash(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def source_hash(*paths: str | Path) -> str:
    """The code version of what these source files compute: a hash of their bytes.

    Used as an asset's ``code_version`` so Dagster (and the reuse of an existing artifact) knows when
    the code that produced an asset really changed, instead of a number someone must remember to bump.
    """
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The code version recorded in model lineage: the git commit when there is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent,
        )
        commit = out.stdout.strip()
        if out.returncode == 0 and commit:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent,
            ).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"
