"""What each build asset hands to the next: small, picklable pointers to versioned artifacts.

The IO manager stores these references, not the arrays or weights themselves; the artifacts live
once, immutably, in the artifact store under their version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetRef:
    version: str
    path: str
    class_names: list[str]
    spec: dict[str, int]
    n_images: int
    source_fingerprint: str = ""  # what the source held (names, sizes, mtimes) when it was read


@dataclass(frozen=True)
class SplitsRef:
    version: str
    path: str
    dataset_version: str
    class_names: list[str]
    spec: dict[str, int]
    counts: dict[str, int]
    source_fingerprint: str = ""


@dataclass(frozen=True)
class TrainedModelRef:
    version: str
    checkpoint: str
    splits_version: str
    config: dict[str, int]
    hyperparameters: dict[str, Any]
    val_accuracy: float
    device: str


@dataclass(frozen=True)
class OnnxModelRef:
    version: str
    path: str
    trained_model_version: str
    splits_version: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationRef:
    version: str
    path: str
    onnx_version: str
    splits_version: str
    metrics: dict[str, Any]
    production_comparison: dict[str, Any]
    explanations: dict[str, Any] = field(default_factory=dict)  # passed, method, reason: may maps be shown?


@dataclass(frozen=True)
class RegisteredModelRef:
    tag: str
    version: str
    promoted: bool
    reason: str
    production_version: str | None
    awaiting_approval: bool = False  # cleared the gate; waits for a reviewer (MLOPS_REQUIRE_APPROVAL)
    in_shadow: bool = False  # released to the shadow slot (MLOPS_RELEASE_POLICY=shadow), beside production
    release_pending: bool = False  # cleared the gate: production_release promotes it once its Bento passes its test
    allow_incompatible: bool = False  # the gate's explicit override of a signature change, carried to the release
