"""Crash-safe file writes: immutable version directories and atomically switched pointers.

Pure standard library, so the model registry and the Bento service can use it without Dagster.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, payload: Any) -> None:
    atomic_write_bytes(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_directory(target: Path, build: Callable[[Path], None]) -> bool:
    """Create the immutable directory ``target`` by letting ``build`` fill a temporary sibling.

    Returns True when this call published it, False when the version already existed (the
    content is addressed by its hash, so an existing directory already holds the same thing).
    """
    if target.is_dir():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    try:
        build(staging)
        return _move_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish_built(parent: Path, build: Callable[[Path], str]) -> tuple[str, Path, bool]:
    """Create an immutable directory under ``parent`` whose name (its content hash) is known only once built.

    ``build`` fills a temporary directory and returns the version; the directory then becomes
    ``parent/<version>``, or is discarded when that version exists already (same content). Returns
    (version, its directory, whether this call published it). A large artifact (a dataset's pixels) is
    thereby written once, streaming, instead of being held in memory until its hash is known.
    """
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=".incoming-"))
    try:
        version = build(staging)
        if not version or "/" in version or version.startswith("."):
            raise ValueError(f"invalid artifact version {version!r}")
        target = parent / version
        return version, target, (not target.is_dir()) and _move_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, target: Path) -> bool:
    """fsync every file of ``staging``, then rename it to ``target`` in one step (False: it already exists)."""
    for file in staging.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    try:
        os.rename(staging, target)
    except OSError:
        if target.is_dir():  # another run published the same version first
            return False
        raise
    _fsync_dir(target.parent)
    return True
