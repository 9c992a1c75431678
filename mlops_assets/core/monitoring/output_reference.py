"""What a model's own outputs look like on its validation split, stored with the version at registration.

The output-only verdict (:mod:`mlops_assets.core.monitoring.output_verdict`) judges served traffic by what the model
answers, not by its pixels: how confident it is and which classes it predicts. Both are compared with the
same model on its *validation* split (images it was not fitted on), so this record is what a window is held
against. It also carries the ATC threshold (Garg et al., "Leveraging Unlabeled Data to Predict
Out-of-Distribution Performance", ICLR 2022): the confidence ``t`` such that the share of validation images
whose confidence exceeds ``t`` equals the validation accuracy. On unlabelled traffic the share of rows with
confidence above ``t`` estimates the accuracy.

Versions registered before this record existed have none: :func:`output_reference_of` returns None, and the
caller says so and falls back to the pixel policy. numpy only; imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

OUTPUT_REFERENCE_KEY = "output_reference"  # the key in a registered version's metadata
SAMPLE_SIZE = 2000  # confidences kept: enough for a KS test, a few kilobytes in the version's record
ESTIMATOR = "ATC"


class OutputReferenceError(ValueError):
    """A validation record that cannot be built or read (no rows, mismatched lengths, a malformed record)."""


def atc_threshold(confidences: np.ndarray, accuracy: float) -> float:
    """The threshold ``t`` with ``share(confidence > t) == accuracy`` on these (validation) confidences.

    With ``k = round(accuracy · n)`` rows to keep above it, ``t`` is the ``(n − k)``-th smallest confidence
    (below every confidence when ``k == n``). Ties at ``t`` make the share smaller than ``k / n``, never larger."""
    import numpy as np

    values = np.sort(np.asarray(confidences, dtype=np.float64).reshape(-1))
    if values.size == 0:
        raise OutputReferenceError("no validation confidence to fit the ATC threshold on")
    if not 0.0 <= accuracy <= 1.0:
        raise OutputReferenceError(f"validation accuracy must be in [0, 1], got {accuracy}")
    above = int(round(accuracy * values.size))
    if above >= values.size:
        return float(np.nextafter(values[0], -np.inf))
    return float(values[values.size - above - 1])


def atc_estimate(confidences: np.ndarray, threshold: float) -> float:
    """Estimated accuracy of unlabelled rows: the share whose confidence exceeds the ATC threshold."""
    import numpy as np

    values = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise OutputReferenceError("no confidence to estimate accuracy from")
    return float(np.mean(values > threshold))


@dataclass(frozen=True)
class OutputReference:
    """The model's outputs on its validation split: what each traffic window's outputs are compared with."""

    validation_accuracy: float
    atc_threshold: float
    confidences: tuple[float, ...]  # a sorted sample (all of them up to SAMPLE_SIZE)
    class_counts: dict[str, int] = field(default_factory=dict)  # predicted class name → validation rows
    n_rows: int = 0
    method: str = ESTIMATOR

    def as_dict(self) -> dict[str, Any]:
        return {
            "validation_accuracy": self.validation_accuracy,
            "atc_threshold": self.atc_threshold,
            "confidences": list(self.confidences),
            "class_counts": dict(self.class_counts),
            "n_rows": self.n_rows,
            "method": self.method,
            "split": "val",
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> OutputReference:
        try:
            return cls(
                float(record["validation_accuracy"]),
                float(record["atc_threshold"]),
                tuple(float(v) for v in record["confidences"]),
                {str(k): int(v) for k, v in dict(record.get("class_counts") or {}).items()},
                int(record.get("n_rows", len(record["confidences"]))),
                str(record.get("method", ESTIMATOR)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise OutputReferenceError(f"malformed {OUTPUT_REFERENCE_KEY} record: {type(exc).__name__}: {exc}") from exc


def fit_output_reference(
    confidences: np.ndarray, predicted: list[str], correct: np.ndarray, seed: int = 0
) -> OutputReference:
    """The record of a model's validation outputs: max-softmax ``confidences``, ``predicted`` class names and
    whether each prediction was ``correct``, one entry per validation image."""
    import numpy as np

    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    right = np.asarray(correct, dtype=bool).reshape(-1)
    if not conf.size == right.size == len(predicted):
        raise OutputReferenceError(
            f"{conf.size} confidences, {right.size} correctness flags and {len(predicted)} predictions do not match"
        )
    if conf.size == 0:
        raise OutputReferenceError("the validation split holds no image: no output reference can be fitted")
    accuracy = float(right.mean())
    sample = conf if conf.size <= SAMPLE_SIZE else np.random.default_rng(seed).choice(conf, SAMPLE_SIZE, False)
    names, counts = np.unique(np.asarray(predicted, dtype=str), return_counts=True)
    return OutputReference(
        accuracy,
        atc_threshold(conf, accuracy),
        tuple(np.sort(sample).round(6).tolist()),
        {str(n): int(c) for n, c in zip(names, counts, strict=True)},
        int(conf.size),
    )


def output_reference_of(metadata: dict[str, Any] | None) -> OutputReference | None:
    """The validation record stored with a registered version; None for a version registered before it existed."""
    record = (metadata or {}).get(OUTPUT_REFERENCE_KEY)
    return OutputReference.from_dict(record) if record else None
