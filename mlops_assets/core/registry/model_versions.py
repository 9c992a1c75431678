"""Model versions in BentoML's model store, and where each stands (its stage), read from the pointer record.

The read side of the registry: what a version is (ONNX file, lineage, metrics, signature) and its stage. The
write side, every transition and the rules it checks, is :class:`mlops_assets.core.registry.registry.ModelRegistry`.
No Dagster import: the CLI and the Bento service use it directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlops_assets.core.model.onnx_model import ONNX_FILE
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.registry import release_rules as rules
from mlops_assets.core.registry.release_rules import AWAITING, REJECTED

PRODUCTION_SLOT = "production"  # the slot every transition (promote, rollback, approve) moves
SLOTS_KEY = "slots"  # other named slots of the pointer record: {slot: version}
SHADOW_SLOT = "shadow"  # the challenger: scores the live requests production answers, answers no client


class RegistryError(RuntimeError):
    """A registry operation that cannot be carried out as asked (unknown version, nothing to roll back)."""


class NothingToRollBackError(RegistryError):
    """No earlier production version may serve again: a refusal to report in one line, not a failure."""


class ApprovalRequiredError(RegistryError):
    """The registry's stored policy requires approval before release and the version has no current approval."""


class NotReleasableError(RegistryError):
    """The version was rejected or withdrawn: no promotion puts it in production without an explicit act."""


class IncompatibleModelError(RegistryError):
    """The version's signature (classes, input geometry) differs from production's: replacing production
    with it would silently change what the service's answers mean. Only an explicit override does it."""


class Stage(StrEnum):
    """Where a version stands. The registry owns every transition between them:

    candidate ──promote──► production ──(next promotion)──► previous-production ──rollback──► production

    With approval before release (the stored policy), a candidate the gate would promote waits for a person:

    candidate ──request_approval──► awaiting-approval ──approve──► production
                                                      └─reject──► rejected

    Rollback withdraws the production version, and so does rejecting it: ``withdrawn`` until an explicit
    reinstate. A rejected version serves only after a fresh comparison and a new approval.

    A challenger can first score the live requests beside production, answering no client:

    candidate ──set_shadow──► shadow ──promote / approve──► production   (clear_shadow or reject: out again)
    """

    CANDIDATE = "candidate"
    AWAITING_APPROVAL = "awaiting-approval"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    PRODUCTION = "production"
    SHADOW = "shadow"
    PREVIOUS_PRODUCTION = "previous-production"


@dataclass(frozen=True)
class ModelVersion:
    tag: str
    version: str
    created: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    path: str
    stage: str  # a Stage value
    review: dict[str, Any] | None = None  # the approval record: who asked and reviewed, when and why
    withdrawn: dict[str, Any] | None = None  # who withdrew it from production, when and why

    @property
    def onnx_path(self) -> Path:
        return Path(self.path) / ONNX_FILE

    @property
    def signature(self) -> ModelSignature | None:
        return ModelSignature.from_metadata(self.metadata)


class ModelVersions:
    """Versions of one model name in a BentoML model store rooted at ``home``, with their stages (read only)."""

    def __init__(self, home: str | Path, model_name: str) -> None:
        self.home = Path(home).expanduser().resolve()
        self.model_name = model_name

    # -- storage -----------------------------------------------------------------------------
    @property
    def pointer_path(self) -> Path:
        return self.home / "production" / f"{self.model_name}.json"

    @property
    def store_path(self) -> Path:
        return self.home / "models"

    def exists(self) -> bool:
        """Whether a model store is at ``home`` at all (reading never creates one)."""
        return self.store_path.is_dir()

    def _store(self, create: bool = False):
        from mlops_assets.core.registry.bentoml_store import model_store

        return model_store(self.store_path, create=create)

    def tag(self, version: str) -> str:
        return f"{self.model_name}:{version}"

    # -- versions ----------------------------------------------------------------------------
    def get(self, version: str) -> ModelVersion:
        import bentoml
        from bentoml.exceptions import NotFound

        if not self.exists():
            raise RegistryError(f"no model registry at {self.store_path}: nothing is registered there yet")
        try:
            model = bentoml.models.get(self.tag(version), _model_store=self._store())
        except NotFound as exc:
            known = ", ".join(v.version for v in self.list_versions()) or "none"
            raise RegistryError(f"no version {version!r} of {self.model_name}; known: {known}") from exc
        return self._describe(model, self.read_pointer())

    def list_versions(self) -> list[ModelVersion]:
        """All versions, newest first, each with its stage."""
        import bentoml
        from bentoml.exceptions import NotFound

        if not self.exists():
            return []
        try:
            models = bentoml.models.list(self.model_name, _model_store=self._store())
        except NotFound:
            return []
        pointer = self.read_pointer()
        versions = [self._describe(m, pointer) for m in models]
        return sorted(versions, key=lambda v: v.created, reverse=True)

    def _describe(self, model, pointer: dict[str, Any]) -> ModelVersion:
        version = model.tag.version
        review = rules.review_of(pointer, version)
        withdrawn = rules.withdrawal(pointer, version)
        if version == pointer.get("current"):
            stage = Stage.PRODUCTION
        elif version == (pointer.get(SLOTS_KEY) or {}).get(SHADOW_SLOT):
            stage = Stage.SHADOW
        elif review and review["state"] == REJECTED:
            stage = Stage.REJECTED
        elif withdrawn:
            stage = Stage.WITHDRAWN
        elif version in pointer.get("history", []):
            stage = Stage.PREVIOUS_PRODUCTION
        elif review and review["state"] == AWAITING:
            stage = Stage.AWAITING_APPROVAL
        else:
            stage = Stage.CANDIDATE
        return ModelVersion(
            tag=str(model.tag),
            version=version,
            created=model.info.creation_time.isoformat(),
            labels=dict(model.info.labels),
            metadata=dict(model.info.metadata),
            path=model.path,
            stage=str(stage),
            review=dict(review) if review else None,
            withdrawn=dict(withdrawn) if withdrawn else None,
        )

    # -- the pointer record: the one reader and writer of its format --------------------------------
    def read_pointer(self) -> dict[str, Any]:
        """The pointer file: ``current`` (production version), ``history`` (rollback stack), ``events``,
        ``reviews`` (per version: the approval record), ``withdrawn`` (per version: who withdrew it and why) and
        ``policy`` (the stored approval policy) and ``slots`` (the other named slots: ``shadow``).

        No BentoML import: sensors and the service's watcher call it every tick."""
        try:
            return json.loads(self.pointer_path.read_text())
        except FileNotFoundError:
            return {"current": None, "history": [], "events": []}
        except json.JSONDecodeError as exc:
            raise RegistryError(f"production pointer {self.pointer_path} is not valid JSON: {exc}") from exc

    def slot_version(self, slot: str) -> str | None:
        """The version a named slot of the pointer record holds, from the pointer alone: ``production`` is
        ``current``; another slot (a shadow or an A/B arm) is under ``slots``. What a serving watcher follows, so a
        second slot is a second watcher, not a second pointer format."""
        pointer = self.read_pointer()
        if slot == PRODUCTION_SLOT:
            return pointer.get("current")
        return (pointer.get(SLOTS_KEY) or {}).get(slot)

    def shadow_version(self) -> str | None:
        """The version in the shadow slot (None: no shadow), from the pointer alone."""
        return self.slot_version(SHADOW_SLOT)

    def in_slot(self, slot: str) -> ModelVersion | None:
        """The version a named slot holds, described (None while the slot is empty)."""
        version = self.slot_version(slot)
        return self.get(version) if version else None
