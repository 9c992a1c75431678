"""Out-of-distribution score of every answer: the energy score on the served model's logits.

Why this method: the energy score (Liu, Wang, Owens, Li, "Energy-based Out-of-distribution Detection", NeurIPS
2020), ``E(x) = -T·logsumexp(logits / T)``, needs nothing but the logits the ONNX model already returns (its
output is ``logits``; the service applies the softmax), so neither the export nor the served graph changes, and
it costs one ``logsumexp`` over N×classes numbers per batch. Higher energy = less like the training data.

Calibration, per model version: the threshold is the ``1 - fpr`` quantile of the energies of the version's own
validation split (images of the training distribution the model never trained on), so about ``fpr`` of
in-distribution images are flagged (MLOPS_OOD_FPR, 5 % by default). It is computed at registration and stored in
the version's metadata under :data:`METADATA_KEY` (:func:`calibration_of` reads it). A version registered before
this existed has no calibration: its answers carry the score, a null flag and the reason (:data:`UNCALIBRATED`);
nothing is calibrated lazily, because the serving process has no access to the version's splits.

No Dagster here; numpy only (imported inside the functions: the code location imports this module).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from mlops_assets.core.data.pixel_store import ImageRows

METHOD = "energy"  # Liu et al., NeurIPS 2020
METADATA_KEY = "ood"  # where a registered version keeps its calibration
DEFAULT_FPR = 0.05
# What the answer fields mean (the service's Prediction model, hence its OpenAPI document)
OOD_SCORE_DOC = (
    "Out-of-distribution score of the image: the energy score -logsumexp(logits) (Liu et al., NeurIPS "
    "2020); higher is less like the training data."
)
OOD_FLAG_DOC = (
    "True when ood_score is above the served version's threshold, calibrated at registration to flag "
    "MLOPS_OOD_FPR (5 % by default) of its validation split; null when the version has no calibration "
    "(ood_reason says so)."
)
OOD_REASON_DOC = "Why the image is flagged, or why there is no flag; null for an image that is not flagged."
UNCALIBRATED = "this model version was registered without an out-of-distribution calibration; re-register it"


@dataclass(frozen=True)
class OodCalibration:
    """A version's flagging rule: energy above ``threshold`` is out of distribution."""

    method: str
    temperature: float
    threshold: float
    target_fpr: float  # the share of validation images asked to be over the threshold
    validation_fpr: float  # the share that is (ties make it differ a little)
    n_validation: int

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return scores > self.threshold

    def reason(self, score: float) -> str:
        """What a refused or flagged answer says."""
        return (
            f"out of distribution: energy score {score:.3f} is above this model version's threshold "
            f"{self.threshold:.3f} (calibrated to flag {self.target_fpr:.1%} of its validation split)"
        )


def energy_scores(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``-T·logsumexp(logits / T)`` per row, computed stably."""
    import numpy as np

    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    return -temperature * (top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1)))


def calibrate(validation_logits: np.ndarray, fpr: float = DEFAULT_FPR, temperature: float = 1.0) -> OodCalibration:
    """The threshold that flags ``fpr`` of the validation split's images."""
    import numpy as np

    if not 0.0 < fpr < 1.0:
        raise ValueError(f"the out-of-distribution false-positive rate must be in (0, 1), got {fpr} (MLOPS_OOD_FPR)")
    if len(validation_logits) == 0:
        raise ValueError("cannot calibrate the out-of-distribution threshold on an empty validation split")
    scores = energy_scores(validation_logits, temperature)
    threshold = float(np.quantile(scores, 1.0 - fpr, method="higher"))
    return OodCalibration(
        METHOD, float(temperature), threshold, float(fpr), float(np.mean(scores > threshold)), int(len(scores))
    )


def calibrate_rows(onnx_path: str | Path, rows: ImageRows, fpr: float = DEFAULT_FPR) -> OodCalibration:
    """Calibrate the ONNX model at ``onnx_path`` on uint8 rows of a pixel store (its validation split)."""
    import numpy as np

    from mlops_assets.core.data.pixel_store import model_batch_rows
    from mlops_assets.core.model.onnx_model import onnx_logits, open_session

    session = open_session(onnx_path)
    logits = [onnx_logits(session, x) for _, x in rows.training_batches(model_batch_rows(rows.shape))]
    return calibrate(np.concatenate(logits) if logits else np.zeros((0, 0)), fpr)


def calibration_of(metadata: dict[str, Any]) -> OodCalibration | None:
    """The calibration stored with a version, or None for a version registered without one."""
    stored = metadata.get(METADATA_KEY)
    if not isinstance(stored, dict):
        return None
    return OodCalibration(**{key: stored[key] for key in OodCalibration.__dataclass_fields__})


@dataclass(frozen=True)
class OodAnswer:
    """What one answer says: the score always; the flag and why, or None and why there is no flag."""

    score: float
    flagged: bool | None
    reason: str | None


def answers(scores: np.ndarray, calibration: OodCalibration | None) -> list[OodAnswer]:
    if calibration is None:
        return [OodAnswer(float(s), None, UNCALIBRATED) for s in scores]
    return [
        OodAnswer(float(s), bool(f), calibration.reason(float(s)) if f else None)
        for s, f in zip(scores, calibration.flags(scores), strict=True)
    ]


@dataclass(frozen=True)
class FlaggedShare:
    """A window's out-of-distribution count: predictions with a flag (a calibrated version), and how many are set."""

    judged: int
    flagged: int

    @property
    def share(self) -> float:
        return self.flagged / self.judged if self.judged else 0.0

    def as_metadata(self) -> dict[str, float | int]:
        """The figures inference_profiles records per window; Dagster plots them over the partitions."""
        return {"ood_judged": self.judged, "ood_flagged": self.flagged, "ood_flagged_share": self.share}


def flagged_share(flags: Any) -> FlaggedShare:
    """From the inference log's ``ood_flagged`` column (1.0, 0.0, NaN: no flag), or None for a log without it."""
    import numpy as np

    values = np.asarray([] if flags is None else flags, dtype=np.float64)
    judged = ~np.isnan(values)
    return FlaggedShare(int(judged.sum()), int((values[judged] > 0.5).sum()))
