"""When served traffic has drifted, and what the monitor does about it: one resource for the report and the sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings


class DriftPolicy(dg.ConfigurableResource):
    """The drift thresholds and the retraining policy, shared by ``drift_report`` and ``drift_sensor`` so both
    judge a window the same way; shown in the UI (Deployment → the code location → Resources)."""

    drift_share: float = Field(
        default=settings.default_value(settings.DRIFT_SHARE),
        description="Share of scored features that must drift for an alarm.",
    )
    p_value: float = Field(
        default=settings.default_value(settings.DRIFT_P_VALUE),
        description="A feature's test p-value below this is significant.",
    )
    distance: float = Field(
        default=settings.default_value(settings.DRIFT_DISTANCE),
        description="... and its Hellinger distance at least this is material.",
    )
    min_rows: int = Field(
        default=settings.default_value(settings.DRIFT_MIN_ROWS),
        description="Fewer rows in a window: too little data to judge.",
    )
    cooldown_hours: float = Field(
        default=settings.default_value(settings.DRIFT_COOLDOWN_HOURS),
        description="No drift retraining within this many hours of the last one (0: no cooldown).",
    )
    retrain_requires_new_data: bool = Field(
        default=settings.default_value(settings.RETRAIN_REQUIRES_NEW_DATA),
        description=(
            "Retrain on drift only when the labelled source holds data the production model was not trained "
            "on; otherwise skip, and alert a person once per drift episode."
        ),
    )

    blind_alert_minutes: float = Field(
        default=settings.default_value(settings.DRIFT_BLIND_ALERT_MINUTES),
        description=(
            "Alert a person once when traffic windows have waited longer than this for the production model's "
            "reference profile (the monitor is blind meanwhile)."
        ),
    )
    retrain_trigger: str = Field(
        default=settings.default_value(settings.RETRAIN_TRIGGER),
        description=(
            "Which signal launches retraining: 'harm' (the estimated accuracy, ATC from the model's confidences, "
            "at least harm_points below the production version's validation accuracy) or 'pixel' (the drift "
            "share at its threshold). Versions registered without a validation record use 'pixel', saying so."
        ),
    )
    harm_points: float = Field(
        default=settings.default_value(settings.HARM_POINTS),
        description="The harm trigger's margin: accuracy percentage points below validation accuracy."
    )
    retrain_run_config: str = Field(
        default=settings.default_value(settings.RETRAIN_RUN_CONFIG),
        description=(
            "A YAML file of run config for the drift sensor's retrain_job runs (e.g. a smaller or larger "
            "hyper-parameter search for trained_model); empty: the job's defaults (MLOPS_RETRAIN_RUN_CONFIG)."
        ),
    )

    def retraining_run_config(self) -> dict:
        """The run config of the file named by ``retrain_run_config`` ({} when none is named), read at every tick
        so an edit applies to the next run; a missing or malformed file is an error naming it."""
        if not self.retrain_run_config:
            return {}
        import yaml

        path = Path(self.retrain_run_config).expanduser()
        where = f"the retraining run config {path} (MLOPS_RETRAIN_RUN_CONFIG)"
        try:
            config = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{where} does not exist") from None
        except yaml.YAMLError as error:
            raise ValueError(f"{where} is not YAML: {error}") from None
        if not isinstance(config, dict):
            raise ValueError(f"{where} must be a mapping of run config (ops:, resources:), got {type(config).__name__}")
        return config

    def decision_policy(self):
        """The policy as the pure decision takes it: thresholds, trigger, cooldown, new-data rule and blind-alert
        span as plain values (each validated where it is defined). The one way out of this resource: the drift
        sensor and ``drift_report`` hand it on and read none of it."""
        from mlops_assets.core.monitoring.drift import DriftThresholds
        from mlops_assets.core.monitoring.drift_tick import DriftDecisionPolicy
        from mlops_assets.core.monitoring.retrain_decision import TriggerPolicy

        return DriftDecisionPolicy(
            thresholds=DriftThresholds(self.drift_share, self.p_value, self.distance, self.min_rows),
            trigger=TriggerPolicy(self.retrain_trigger, self.harm_points),
            cooldown_hours=self.cooldown_hours,
            retrain_requires_new_data=self.retrain_requires_new_data,
            blind_alert_minutes=self.blind_alert_minutes,
        )
