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
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlops_assets.ml.onnx_model import ONNX_FILE
from mlops_assets.ml.storage import atomic_write_json


class RegistryError(RuntimeError):
    """A registry operation that cannot be carried out as asked (unknown version, nothing to roll back)."""


class ApprovalRequiredError(RegistryError):
    """Approval before release is required (MLOPS_REQUIRE_APPROVAL) and the version was not approved by a reviewer."""


class IncompatibleModelError(RegistryError):
    """The version's signature (classes, input geometry) differs from production's: replacing production
    with it would silently change what the service's answers mean. Only an explicit override does it."""


class Stage(StrEnum):
    """Where a version stands. The registry owns every transition between them:

    candidate ──promote──► production ──(next promotion)──► previous-production ──rollback──► production

    With approval before release (``require_approval``), a candidate the gate would promote waits for a person:

    candidate ──request_approval──► awaiting-approval ──approve──► production
                                                      └─reject──► rejected

    A rollback also returns the current production version to ``candidate``: it was withdrawn, it is not a
    version to roll back *to*.
    """

    CANDIDATE = "candidate"
    AWAITING_APPROVAL = "awaiting-approval"
    REJECTED = "rejected"
    PRODUCTION = "production"
    PREVIOUS_PRODUCTION = "previous-production"


AWAITING, APPROVED, REJECTED = "awaiting", "approved", "rejected"  # the states of a review record


@dataclass(frozen=True)
class ModelSignature:
    """What a caller of the model relies on: the class names in order and the input geometry."""

    class_names: tuple[str, ...]
    channels: int
    height: int
    width: int

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelSignature | None:
        """The signature stored with a version, or None for a version registered without one."""
        names, spec = metadata.get("class_names"), metadata.get("spec")
        if not names or not isinstance(spec, dict) or not {"channels", "height", "width"} <= spec.keys():
            return None
        return cls(tuple(str(n) for n in names), int(spec["channels"]), int(spec["height"]), int(spec["width"]))

    @property
    def geometry(self) -> str:
        return f"{self.channels}×{self.height}×{self.width}"

    def differences(self, other: ModelSignature) -> list[str]:
        """How ``other`` differs from this signature, in words; empty when they are compatible."""
        found = []
        if self.class_names != other.class_names:
            if set(self.class_names) == set(other.class_names):
                found.append(f"class order {list(other.class_names)} instead of {list(self.class_names)}")
            else:
                added = sorted(set(other.class_names) - set(self.class_names))
                removed = sorted(set(self.class_names) - set(other.class_names))
                found.append(
                    f"classes differ ({len(other.class_names)} instead of {len(self.class_names)}"
                    + (f"; new: {added[:5]}" if added else "") + (f"; missing: {removed[:5]}" if removed else "")
                    + ")"
                )
        if self.geometry != other.geometry:
            found.append(f"input {other.geometry} instead of {self.geometry} (channels×height×width)")
        return found


def signature_differences(current: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why a model with metadata ``new`` cannot replace one with ``current`` (empty list: it can)."""
    before, after = ModelSignature.from_metadata(current), ModelSignature.from_metadata(new)
    if before is None or after is None:
        return ["signature unknown (registered without class names and input geometry)"]
    return before.differences(after)


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

    @property
    def onnx_path(self) -> Path:
        return Path(self.path) / ONNX_FILE

    @property
    def signature(self) -> ModelSignature | None:
        return ModelSignature.from_metadata(self.metadata)


class ModelRegistry:
    """Versions of one model name in a BentoML model store rooted at ``home``.

    With ``require_approval`` every promotion refuses a version a reviewer has not approved: the gate asks for
    approval instead (:meth:`request_approval`), and a person decides (:meth:`approve`, :meth:`reject`).
    """

    def __init__(self, home: str | Path, model_name: str, require_approval: bool = False) -> None:
        self.home = Path(home).expanduser().resolve()
        self.model_name = model_name
        self.require_approval = require_approval

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
        from mlops_assets.ml.bentoml_private import model_store

        return model_store(self.store_path, create=create)

    def tag(self, version: str) -> str:
        return f"{self.model_name}:{version}"

    # -- versions ----------------------------------------------------------------------------
    def register(
        self, onnx_file: str | Path, version: str, labels: dict[str, str], metadata: dict[str, Any]
    ) -> ModelVersion:
        """Store an ONNX model under ``version``; registering the same version again is a no-op."""
        import bentoml
        from bentoml.exceptions import NotFound

        store = self._store(create=True)
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
        review = pointer.get("reviews", {}).get(version)
        if version == pointer.get("current"):
            stage = Stage.PRODUCTION
        elif version in pointer.get("history", []):
            stage = Stage.PREVIOUS_PRODUCTION
        elif review and review["state"] == AWAITING:
            stage = Stage.AWAITING_APPROVAL
        elif review and review["state"] == REJECTED:
            stage = Stage.REJECTED
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
        )

    # -- production pointer: the one reader and writer of its format ------------------------------
    def read_pointer(self) -> dict[str, Any]:
        """The pointer file: ``current`` (production version), ``history`` (rollback stack), ``events``, and
        ``reviews`` (per version: the approval record).

        No BentoML import: sensors and the service's watcher call it every tick."""
        try:
            return json.loads(self.pointer_path.read_text())
        except FileNotFoundError:
            return {"current": None, "history": [], "events": []}
        except json.JSONDecodeError as exc:
            raise RegistryError(f"production pointer {self.pointer_path} is not valid JSON: {exc}") from exc

    def production_version(self) -> str | None:
        """The version in production, from the pointer alone (cheap: no model store access)."""
        return self.read_pointer().get("current")

    def production(self) -> ModelVersion | None:
        current = self.production_version()
        return self.get(current) if current else None

    def compatibility(self, version: str) -> list[str]:
        """How ``version`` differs from production's signature (empty: it may replace production)."""
        current = self.production()
        if current is None or current.version == version:
            return []
        return signature_differences(current.metadata, self.get(version).metadata)

    def _require_compatible(self, version: str, allow_incompatible: bool, action: str) -> list[str]:
        differences = self.compatibility(version)
        if differences and not allow_incompatible:
            current = self.production_version()
            raise IncompatibleModelError(
                f"refusing to {action} {self.tag(version)}: it is not compatible with production {current}: "
                + "; ".join(differences)
                + ". Replacing production with an incompatible model changes what every caller receives; "
                "do it explicitly (mlops-registry … --allow-incompatible, or allow_incompatible in the gate config)"
            )
        return differences

    def promote(
        self, version: str, reason: str = "manual promotion", actor: str = "unknown",
        allow_incompatible: bool = False,
    ) -> ModelVersion:
        """candidate/previous-production → production; the production version before it is kept for rollback.

        Refuses a version whose signature differs from production's unless ``allow_incompatible``, and, with
        ``require_approval``, a version no reviewer approved (:meth:`approve` is how it reaches production).
        """
        self.get(version)  # must exist
        pointer = self.read_pointer()
        if pointer.get("current") == version:
            return self.get(version)
        review = pointer.get("reviews", {}).get(version)
        if self.require_approval and (review or {}).get("state") != APPROVED:
            raise ApprovalRequiredError(
                f"refusing to promote {self.tag(version)}: approval before release is required "
                f"(MLOPS_REQUIRE_APPROVAL) and it is {self._review_state(version, review)}"
            )
        differences = self._require_compatible(version, allow_incompatible, "promote")
        self._switch(pointer, version, "promote", reason, actor, differences)
        return self.get(version)

    def _switch(self, pointer: dict[str, Any], version: str, action: str, reason: str, actor: str,
                differences: list[str], **extra: Any) -> None:
        """``version`` becomes production; the production version before it goes on the rollback stack."""
        history = [v for v in pointer.get("history", []) if v != version]
        if pointer.get("current"):
            history.append(pointer["current"])
        self._transition(pointer, version, history, action, reason, actor, differences, **extra)

    # -- approval before release -------------------------------------------------------------------
    def _review_state(self, version: str, review: dict[str, Any] | None) -> str:
        if not review:
            return "not approved (no approval was requested for it)"
        if review["state"] == AWAITING:
            return (f"awaiting approval since {review['requested_at'][:19]}: approve it with "
                    f"`mlops-registry approve {version} --by NAME --reason ...` or review_model_job")
        if review["state"] == REJECTED:
            return f"rejected by {review['reviewed_by']} ({review['review_reason']})"
        return "approved"

    def request_approval(self, version: str, reason: str, actor: str = "unknown",
                         allow_incompatible: bool = False) -> ModelVersion:
        """candidate → awaiting-approval: the gate's verdict waits for a person. Records what production was
        when the request was made, so an approval cannot act on a comparison that has gone stale."""
        self.get(version)
        pointer = self.read_pointer()
        if pointer.get("current") == version:
            raise RegistryError(f"{self.tag(version)} is already the production model")
        earlier = pointer.get("reviews", {}).get(version)
        if earlier and earlier["state"] == AWAITING:  # the same verdict again (a re-run): one request
            return self.get(version)
        if earlier and earlier["state"] == REJECTED:
            raise RegistryError(f"{self.tag(version)} was {self._review_state(version, earlier)}")
        differences = self._require_compatible(version, allow_incompatible, "request approval for")
        review = {
            "state": AWAITING, "requested_at": _now(), "requested_by": actor, "request_reason": reason,
            "production_at_request": pointer.get("current"),
            **({"incompatible_override": differences} if differences else {}),
        }
        self._record_review(pointer, version, review, "request-approval", reason, actor)
        return self.get(version)

    def approve(self, version: str, by: str, reason: str, allow_incompatible: bool = False) -> ModelVersion:
        """awaiting-approval → production, recording the reviewer, when and why (one atomic write)."""
        review, pointer = self._awaiting(version, by, reason, "approve")
        current = pointer.get("current")
        if current != review.get("production_at_request"):
            raise RegistryError(
                f"refusing to approve {self.tag(version)}: production changed from "
                f"{review.get('production_at_request')} to {current} since the gate compared them; run the gate "
                "again (build_job) so the reviewer approves a current comparison"
            )
        allowed = allow_incompatible or bool(review.get("incompatible_override"))
        differences = self._require_compatible(version, allowed, "approve")
        reviewed = {**review, "state": APPROVED, "reviewed_at": _now(), "reviewed_by": by, "review_reason": reason}
        self._switch(pointer, version, "approve", reason, by, differences,
                     reviews={**pointer.get("reviews", {}), version: reviewed})
        return self.get(version)

    def reject(self, version: str, by: str, reason: str) -> ModelVersion:
        """awaiting-approval → rejected, recording the reviewer, when and why; production is unchanged."""
        review, pointer = self._awaiting(version, by, reason, "reject")
        reviewed = {**review, "state": REJECTED, "reviewed_at": _now(), "reviewed_by": by, "review_reason": reason}
        self._record_review(pointer, version, reviewed, "reject", reason, by)
        return self.get(version)

    def awaiting_approval(self) -> list[ModelVersion]:
        """Versions waiting for a reviewer, oldest request first (the pointer alone, then one read each)."""
        reviews = self.read_pointer().get("reviews", {})
        waiting = sorted((r["requested_at"], v) for v, r in reviews.items() if r["state"] == AWAITING)
        return [self.get(version) for _, version in waiting]

    def _awaiting(self, version: str, by: str, reason: str, action: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if not by.strip() or not reason.strip():
            raise RegistryError(f"to {action} {self.tag(version)}, say who you are (--by) and why (--reason)")
        self.get(version)
        pointer = self.read_pointer()
        review = pointer.get("reviews", {}).get(version)
        if not review or review["state"] != AWAITING:
            raise RegistryError(
                f"cannot {action} {self.tag(version)}: it is {self._review_state(version, review)}; only a version "
                "awaiting approval (one the gate would have promoted) can be approved or rejected"
            )
        return review, pointer

    def _record_review(self, pointer: dict[str, Any], version: str, review: dict[str, Any], action: str,
                       reason: str, actor: str) -> None:
        event = {"at": review.get("reviewed_at", review["requested_at"]), "action": action, "version": version,
                 "from": pointer.get("current"), "to": pointer.get("current"), "reason": reason, "actor": actor}
        atomic_write_json(self.pointer_path, {
            **pointer, "reviews": {**pointer.get("reviews", {}), version: review},
            "events": [*pointer.get("events", []), event],
        })

    def rollback(
        self, reason: str = "manual rollback", actor: str = "unknown", allow_incompatible: bool = False
    ) -> ModelVersion:
        """production → candidate, and the previous production version → production.

        Allowed with ``require_approval`` too: it returns to a version that was released before (the way back
        from a bad release must not wait for a reviewer)."""
        pointer = self.read_pointer()
        history = list(pointer.get("history", []))
        if not history:
            raise RegistryError(f"{self.model_name} has no previous production version to roll back to")
        previous = history.pop()
        differences = self._require_compatible(previous, allow_incompatible, "roll back to")
        self._transition(pointer, previous, history, "rollback", reason, actor, differences)
        return self.get(previous)

    def _transition(
        self, pointer: dict[str, Any], current: str, history: list[str], action: str, reason: str, actor: str,
        differences: list[str], **extra: Any,
    ) -> None:
        """Switch the pointer and record the transition (what, from, to, who, when, why), in one atomic write."""
        event = {
            "at": _now(),
            "action": action,
            "from": pointer.get("current"),
            "to": current,
            "reason": reason,
            "actor": actor,
        }
        if differences:
            event["incompatible_override"] = differences
        events = [*pointer.get("events", []), event]
        atomic_write_json(self.pointer_path, {
            **pointer, **extra, "current": current, "history": history, "events": events,
        })

    def events(self) -> list[dict[str, Any]]:
        """Every transition, oldest first."""
        return list(self.read_pointer().get("events", []))


def _now() -> str:
    return datetime.now(UTC).isoformat()
