"""When production accuracy or bias calls for a person: the thresholds of ``production_performance``."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings


class PerformancePolicy(dg.ConfigurableResource):
    """Thresholds on labelled production traffic, per window and model version (defaults from MLOPS_PERF_*;
    shown in the UI with the code location's resources). A breach fails the asset's non-blocking check and
    alerts a person once per episode (``performance_alert_sensor``)."""

    min_accuracy: float = Field(
        default=settings.default_value(settings.PERF_MIN_ACCURACY),
        description="Accuracy below this on labelled traffic is a breach.",
    )
    max_recall_gap: float = Field(
        default=settings.default_value(settings.PERF_MAX_RECALL_GAP),
        description="Best class recall minus worst above this is a breach (the bias signal).",
    )
    min_labelled: int = Field(
        default=settings.default_value(settings.PERF_MIN_LABELLED),
        description="Fewer labelled predictions of a version: not judged.",
    )
    min_class_labelled: int = Field(
        default=settings.default_value(settings.PERF_MIN_CLASS_LABELLED),
        description="Classes with fewer labels are left out of the gap.",
    )

    comparison_alpha: float = Field(
        default=settings.default_value(settings.COMPARISON_ALPHA),
        description="live_comparison: McNemar's exact test says 'better' or 'worse' at this level (type I error ≤ "
                    "alpha); versions with fewer than min_labelled labelled pairs are not judged.",
    )

    def thresholds(self):
        """The thresholds as the pure measurement takes them (validated there)."""
        from mlops_assets.core.monitoring.performance import PerformanceThresholds

        return PerformanceThresholds(self.min_accuracy, self.max_recall_gap, self.min_labelled,
                                     self.min_class_labelled)
