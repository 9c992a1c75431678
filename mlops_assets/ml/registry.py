"""The model registry: BentoML's model store for versions, plus an atomic production pointer.

BentoML's store keeps every model version immutably, with labels and metadata (lineage, metrics,
hyper-parameters). It has no notion of stages, so "which version is in production" is a small
JSON pointer next to the store, switched atomically (write temp, fsync, rename) and carrying its
own history, which is what makes rollback one step. The Bento service reads the same pointer, so
promoting or rolling back is what the running service follows.

No Dagster import here: the CLI and the Bento service use this module directly.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_assets.ml.onnx_model import ONNX_FILE
from mlops_assets.ml.storage import atomic_write_json


class RegistryError(RuntimeError):
    """A registry operation that cannot be carried out as asked (unknown version, nothing to roll back)."""


@dataclass(frozen=True)
class ModelVersion:
    tag: str
    version: str
    created: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    path: str
    stage: str  # "production", "previous-production" or "candidate"

    @property
    def onnx_path(self) -> Path:
        return Path(self.path) / ONNX_FILE


class ModelRegistry:
    """Versions of one model name in a BentoML model store rooted at ``home``."""

    def __init__(self, home: str | Path, model_name: str) -> None:
        self.home = Path(home).expanduser().resolve()
        self.model_name = model_name

    # -- storage -----------------------------------------------------------------------------
    @property
    def pointer_path(self) -> Path:
        return self.home / "production" / f"{self.model_name}.json"

    def _store(self):
        from bentoml._internal.models import ModelStore

        (self.home / "models").mkdir(parents=True, exist_ok=True)
        return ModelStore(self.home / "models")

    def tag(self, version: str) -> str:
        return f"{self.model_name}:{version}"

    # -- versions ----------------------------------------------------------------------------
    def register(
        self, onnx_file: str | Path, version: str, labels: dict[str, str], metadata: dict[str, Any]
    ) -> ModelVersion:
        """Store an ONNX model under ``version``; registering the same version again is a no-op."""
        import bentoml
        from bentoml.exceptions import NotFound

        store = self._store()
        try:
            bentoml.models.get(self.tag(version), _model_store=store)
        except NotFound:
            with bentoml.models.create(
                self.tag(version), labels=labels, metadata=metadata, _model_store=store
            ) as model:
                shutil.copyfile(onnx_file, model.path_of(ONNX_FILE))
        return self.get(version)

    def get(self, version: str) -> ModelVersion:
        import bentoml
        from bentoml.exceptions import NotFound

        try:
            model = bentoml.models.get(self.tag(version), _model_store=self._store())
        except NotFound as exc:
            known = ", ".join(v.version for v in self.list_versions()) or "none"
            raise RegistryError(f"no version {version!r} of {self.model_name}; known: {known}") from exc
        return self._describe(model, self._read_pointer())

    def list_versions(self) -> list[ModelVersion]:
        """All versions, newest first, each with its stage."""
        import bentoml
        from bentoml.exceptions import NotFound

        try:
            models = bentoml.models.list(self.model_name, _model_store=self._store())
        except NotFound:
            return []
        pointer = self._read_pointer()
        versions = [self._describe(m, pointer) for m in models]
        return sorted(versions, key=lambda v: v.created, reverse=True)

    def _describe(self, model, pointer: dict[str, Any]) -> ModelVersion:
        version = model.tag.version
        if version == pointer.get("current"):
            stage = "production"
        elif version in pointer.get("history", []):
            stage = "previous-production"
        else:
            stage = "candidate"
        return ModelVersion(
            tag=str(model.tag),
            version=version,
            created=model.info.creation_time.isoformat(),
            labels=dict(model.info.labels),
            metadata=dict(model.info.metadata),
            path=model.path,
            stage=stage,
        )

    # -- production pointer ------------------------------------------------------------------
    def _read_pointer(self) -> dict[str, Any]:
        try:
            return json.loads(self.pointer_path.read_text())
        except FileNotFoundError:
            return {"current": None, "history": [], "events": []}
        except json.JSONDecodeError as exc:
            raise RegistryError(f"production pointer {self.pointer_path} is not valid JSON: {exc}") from exc

    def production(self) -> ModelVersion | None:
        current = self._read_pointer().get("current")
        return self.get(current) if current else None

    def promote(self, version: str, reason: str = "manual promotion") -> ModelVersion:
        """Make ``version`` the production model; the previous one is kept for rollback."""
        self.get(version)  # must exist
        pointer = self._read_pointer()
        if pointer.get("current") == version:
            return self.get(version)
        history = list(pointer.get("history", []))
        if pointer.get("current"):
            history.append(pointer["current"])
        self._write_pointer(pointer, version, history, "promote", reason)
        return self.get(version)

    def rollback(self, reason: str = "manual rollback") -> ModelVersion:
        """Return to the production version before the current one."""
        pointer = self._read_pointer()
        history = list(pointer.get("history", []))
        if not history:
            raise RegistryError(f"{self.model_name} has no previous production version to roll back to")
        previous = history.pop()
        self._write_pointer(pointer, previous, history, "rollback", reason)
        return self.get(previous)

    def _write_pointer(
        self, pointer: dict[str, Any], current: str, history: list[str], action: str, reason: str
    ) -> None:
        events = list(pointer.get("events", []))[-99:]
        events.append(
            {
                "at": datetime.now(UTC).isoformat(),
                "action": action,
                "from": pointer.get("current"),
                "to": current,
                "reason": reason,
            }
        )
        atomic_write_json(self.pointer_path, {"current": current, "history": history, "events": events})

    def events(self) -> list[dict[str, Any]]:
        return list(self._read_pointer().get("events", []))
