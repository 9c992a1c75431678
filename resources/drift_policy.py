"""When served traffic has drifted, and what the monitor does about it: one resource for the report and the sensor."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class DriftPolicy(dg.ConfigurableResource):
    """The drift thresholds and the retraining policy, shared by ``drift_report`` and ``drift_sensor`` so both
    judge a window the same way; shown in the UI (Deployment → the code location → Resources)."""

    drift_share: float = Field(default=0.30, description="Share of scored features that must drift for an alarm.")
    p_value: float = Field(default=0.05, description="A feature's test p-value below this is significant.")
    distance: float = Field(default=0.15, description="... and its Hellinger distance at least this is material.")
    min_rows: int = Field(default=100, description="Fewer rows in a window: too little data to judge.")
    cooldown_hours: float = Field(
        default=6.0, description="No drift retraining within this many hours of the last one (0: no cooldown)."
    )
    retrain_requires_new_data: bool = Field(
        default=True,
        description=(
            "Retrain on drift only when the labelled source holds data the production model was not trained "
            "on; otherwise skip, and alert a person once per drift episode."
        ),
    )

    def thresholds(self):
        """The thresholds as the pure drift scoring takes them (validated there)."""
        from mlops_assets.ml.drift import DriftThresholds

        return DriftThresholds(self.drift_share, self.p_value, self.distance, self.min_rows)
