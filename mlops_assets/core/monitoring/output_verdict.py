"""The output-only verdict on one traffic window: what the model answered, against what it answered on validation.

Black-box shift detection on the model's own outputs was the strongest detector in Rabanser et al., "Failing
Loudly" (NeurIPS 2019), and it is blind to pixel changes the model shrugs off. Per window:

- the confidence (max softmax) distribution against the validation sample: two-sample Kolmogorov-Smirnov
  (``scipy.stats.ks_2samp``);
- the predicted-class mix against validation's: chi-squared on the 2 × classes contingency table
  (``scipy.stats.chi2_contingency``), so the validation split's own sampling noise is accounted for;
- the estimated accuracy without labels: ATC (share of rows above the version's stored threshold).

The window's outputs come from its whylogs profile, never its rows: the ``confidence`` column's KLL sketch
(exact up to its k = 1024 retained items, so for any window of up to about a thousand rows) and the
``predicted_class`` column's frequent-items sketch. scipy is imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_assets.core.data.features import CONFIDENCE, PREDICTED_CLASS
from mlops_assets.core.monitoring.output_reference import OutputReference, atc_estimate

if TYPE_CHECKING:
    import numpy as np

MAX_SAMPLE = 2000  # quantiles read back from a larger window's sketch


@dataclass(frozen=True)
class WindowOutputs:
    """One window's model outputs: a confidence sample and the predicted-class counts."""

    confidences: np.ndarray
    class_counts: dict[str, int]
    n_rows: int


@dataclass(frozen=True)
class OutputVerdict:
    """The output-only figures of one window; ``drop_points`` is what the harm trigger acts on."""

    n_rows: int
    estimated_accuracy: float
    validation_accuracy: float
    method: str
    atc_threshold: float
    confidence_ks: float
    confidence_p: float
    class_chi2: float | None
    class_p: float | None
    mean_confidence: float
    validation_mean_confidence: float

    @property
    def drop_points(self) -> float:
        """Validation accuracy minus the estimate, in percentage points (positive: worse than at registration)."""
        return 100.0 * (self.validation_accuracy - self.estimated_accuracy)

    def describe(self) -> str:
        classes = "—" if self.class_p is None else f"{self.class_p:.2g}"
        return (
            f"estimated accuracy {self.estimated_accuracy:.2f} ({self.method}) vs {self.validation_accuracy:.2f} "
            f"at registration; confidence KS p {self.confidence_p:.2g}, class mix χ² p {classes}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "drop_points": self.drop_points}


def outputs_from_profile(view) -> WindowOutputs | None:
    """The confidences and predicted classes a window's profile holds; None when it has no confidence column."""
    import numpy as np
    from whylogs.viz.utils.frequent_items_calculations import get_frequent_stats

    columns = view.get_columns()
    column = columns.get(CONFIDENCE)
    dist = column.get_metric("distribution") if column is not None else None
    if dist is None or dist.kll.value.is_empty():
        return None
    sketch = dist.kll.value
    n = int(sketch.get_n())
    size = min(n, MAX_SAMPLE)
    sample = np.asarray(sketch.get_quantiles([(i + 0.5) / size for i in range(size)]), dtype=np.float64)
    counts: dict[str, int] = {}
    if PREDICTED_CLASS in columns:
        stats = get_frequent_stats(columns[PREDICTED_CLASS], config=None) or {}
        counts = {str(item["value"]): int(item["estimate"]) for item in stats.get("frequent_items", [])}
    return WindowOutputs(sample, counts, n)


def class_mix_test(window: dict[str, int], validation: dict[str, int]) -> tuple[float | None, float | None]:
    """Chi-squared statistic and p-value of the window's predicted-class counts against validation's."""
    import numpy as np
    from scipy.stats import chi2_contingency

    classes = sorted(set(window) | set(validation))
    table = np.array([[window.get(c, 0) for c in classes], [validation.get(c, 0) for c in classes]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return None, None
    statistic, p_value, _, _ = chi2_contingency(table)
    return float(statistic), float(p_value)


def judge_outputs(reference: OutputReference, outputs: WindowOutputs) -> OutputVerdict:
    """The output-only verdict of one window against the production version's validation record."""
    import numpy as np
    from scipy.stats import ks_2samp

    validation = np.asarray(reference.confidences, dtype=np.float64)
    ks = ks_2samp(outputs.confidences, validation)
    chi2, chi2_p = class_mix_test(outputs.class_counts, reference.class_counts)
    return OutputVerdict(
        n_rows=outputs.n_rows,
        estimated_accuracy=atc_estimate(outputs.confidences, reference.atc_threshold),
        validation_accuracy=reference.validation_accuracy,
        method=reference.method,
        atc_threshold=reference.atc_threshold,
        confidence_ks=float(ks.statistic),
        confidence_p=_finite(ks.pvalue),
        class_chi2=chi2,
        class_p=chi2_p,
        mean_confidence=float(np.mean(outputs.confidences)),
        validation_mean_confidence=float(np.mean(validation)),
    )


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 1.0
