"""The served model: one immutable (version, onnxruntime session) pair that computes, and nothing else.

It does not log: the request path (``bentos/service.py``) decides what is written to the inference log, under which
prediction id, so a second model's answers (a shadow) or an explanation can be logged beside the served one under
the same id without this class knowing. ``tests/test_architecture.py`` keeps the inference log out of this module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.core.data.images import PreprocessSpec
from mlops_assets.core.model import explain
from mlops_assets.core.model.onnx_model import onnx_logits, onnx_logits_and_features, open_session, softmax
from mlops_assets.core.model.ood import OodAnswer, OodCalibration, answers, calibration_of, scores_of
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.registry.registry import RegistryError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class LoadedModel:
    """One immutable (version, session) pair; swapping replaces the whole object at once."""

    version: str
    tag: str
    session: Any
    class_names: list[str]
    labels: dict[str, str]
    metadata: dict[str, Any]
    source: str
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    ood: OodCalibration | None = None  # the version's stored calibration (mlops_assets/core/model/ood.py)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax per image, in class order."""
        return softmax(onnx_logits(self.session, images))

    def answer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[OodAnswer]]:
        """Softmax per image, its out-of-distribution score and answer (one model call: logits and, when the
        version's calibration reads them, the penultimate layer's features)."""
        if self.ood is not None and self.ood.needs_features:
            logits, features = onnx_logits_and_features(self.session, images)
        else:
            logits, features = onnx_logits(self.session, images), None
        scores = scores_of(self.ood, logits, features)
        return softmax(logits), scores, answers(scores, self.ood)

    def timed_answer(self, images: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, list[OodAnswer]], float]:
        """:meth:`answer` and the wall time of that call in ms (the whole batch's: the inference log's ``model_ms``,
        from which the live comparison reports latency per version)."""
        started = time.perf_counter()
        answer = self.answer(images)
        return answer, (time.perf_counter() - started) * 1000.0

    def explanation_refusal(self) -> str | None:
        """Why this version's explanations must not be shown (its stored check did not pass, or it has none)."""
        return explain.refusal(self.metadata, self.version)

    def explain(self, image: np.ndarray, target: int) -> explain.Explanation:
        """The occlusion map of one (C, H, W) image for class ``target``, with this version's session; its
        occluded copies go through onnxruntime :data:`~mlops_assets.core.model.explain.EXPLAIN_BATCH_ROWS` at a
        time, so the session's arena stays the size of a classify batch."""

        def predict(batch: np.ndarray) -> np.ndarray:
            return softmax(onnx_logits(self.session, batch, explain.EXPLAIN_BATCH_ROWS))

        return explain.occlusion(predict, image, target)


def load_model(
    path: Path,
    tag: str,
    version: str,
    labels: dict[str, str],
    metadata: dict[str, Any],
    source: str,
    served: ModelSignature,
) -> LoadedModel:
    """Open and warm up a session, and check it fits the API this process serves (``served``: the classes and
    geometry of its request and feedback schemas, fixed for the life of the process)."""
    import numpy as np

    signature = ModelSignature.from_metadata(metadata)
    if signature is None:
        raise RegistryError(f"{tag} was registered without class names and input geometry; it cannot be served")
    if signature.geometry != served.geometry:
        raise RegistryError(
            f"{tag} expects {signature.geometry} images but this server's API takes {served.geometry} "
            "(channels×height×width); restart the service to change geometry"
        )
    differences = served.differences(signature)
    if differences:
        raise RegistryError(
            f"{tag} does not fit this server's API: {'; '.join(differences)}; restart the service to serve it"
        )
    spec = PreprocessSpec(**metadata["spec"])
    session = open_session(path)
    logits = onnx_logits(session, np.zeros((1, spec.channels, spec.height, spec.width), np.float32))
    class_names = list(signature.class_names)
    if logits.shape != (1, len(class_names)):
        raise RegistryError(f"{tag} returns logits of shape {logits.shape} for {len(class_names)} classes")
    return LoadedModel(version, tag, session, class_names, dict(labels), dict(metadata), source,
                       ood=calibration_of(metadata))
