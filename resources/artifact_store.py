"""The one place that knows where artifacts live on disk, and how they are written.

Artifacts (datasets, splits, models, reports, profiles) are immutable and addressed by version:
``<root>/<kind>/<version>/``. A version directory is built in a temporary sibling and renamed
into place in one step, so a reader never sees half an artifact, and publishing a version that
already exists is a no-op rather than an overwrite. Pointers (which model is in production) are
small JSON files replaced atomically (write temp, fsync, rename).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.core.common.storage import atomic_write_json, publish_built, publish_directory

ARTIFACT_KINDS = ("datasets", "splits", "models", "onnx", "reports", "gx", "labels", "profiles", "inference_log")


class ArtifactStore(dg.ConfigurableResource):
    """Versioned, immutable artifact storage on a (possibly shared) filesystem."""

    root: str

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def kind_path(self, kind: str) -> Path:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; expected one of {ARTIFACT_KINDS}")
        return self.root_path / kind

    def path(self, kind: str, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ValueError(f"invalid artifact version {version!r}")
        return self.kind_path(kind) / version

    def publish(self, kind: str, version: str, build: Callable[[Path], None]) -> Path:
        """Write an artifact once; later calls with the same version return the existing one."""
        target = self.path(kind, version)
        publish_directory(target, build)
        return target

    def publish_built(self, kind: str, build: Callable[[Path], str]) -> tuple[str, Path]:
        """Write an artifact whose version is its content hash, known once written: ``build`` fills a staging
        directory and returns the version; an existing version is kept and the new copy discarded."""
        version, target, _ = publish_built(self.kind_path(kind), build)
        return version, target

    def exists(self, kind: str, version: str) -> bool:
        return self.path(kind, version).is_dir()

    def versions(self, kind: str) -> list[str]:
        base = self.root_path / kind
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def profiles(self):
        """The whylogs profiles under this root (their layout is owned by
        ``mlops_assets.core.monitoring.profile_layout``)."""
        from mlops_assets.core.monitoring.profile_layout import ProfileStore

        return ProfileStore(self.root_path / "profiles")

    # -- pointers: small mutable JSON files naming versions, switched atomically ------------------
    def pointer_path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid pointer name {name!r}")
        return self.root_path / "pointers" / f"{name}.json"

    def read_pointer(self, name: str) -> dict[str, Any]:
        """The pointer's content, or ``{}`` when it has never been written."""
        path = self.pointer_path(name)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"pointer {path} is not valid JSON: {exc}") from exc

    def write_pointer(self, name: str, payload: dict[str, Any]) -> None:
        """Replace the pointer in one step (write temp, fsync, rename): readers see old or new."""
        atomic_write_json(self.pointer_path(name), payload)
