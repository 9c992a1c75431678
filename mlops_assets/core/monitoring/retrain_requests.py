"""What the drift monitor asks for and tells a person, as plain data: the runs it requests (a retraining, a
reference profile) and the alerts it sends (drift without new labelled data, a refused retraining, a blind spell).

No Dagster here: :mod:`mlops_assets.core.monitoring.drift_tick` decides which of these a tick produces, and the
sensor (``sensors/drift_sensor.py``) turns a :class:`RunSpec` into a ``RunRequest`` (the run kind and trigger
into the tags the run queue reads) and hands each alert to the alert sink.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from mlops_assets.core.monitoring.profile_layout import reference_version, window_label


@dataclass(frozen=True)
class LabelledData:
    """What the labelled source holds now against what production was trained on."""

    current: str | None  # the source's fingerprint now (None: it could not be read)
    trained: str | None  # the fingerprint production was trained on (None: not recorded)
    dataset_version: str
    problem: str = ""

    @property
    def is_new(self) -> bool:
        return self.current is not None and self.current != self.trained


@dataclass(frozen=True)
class RetrainingRun:
    """What a retraining run is launched with: the run config of the drift policy's file (``source``), if any."""

    run_config: dict = dataclasses.field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class RunSpec:
    """A run to request: its job, run key (one run per key), config, the kind of work (``training``,
    ``monitoring``), what triggered it (``drift`` or nothing) and its other tags."""

    job_name: str
    run_key: str
    kind: str
    run_config: dict = dataclasses.field(default_factory=dict)
    triggered_by: str = ""
    tags: dict = dataclasses.field(default_factory=dict)


def reference_run(model_version: str) -> RunSpec:
    """A run that builds the reference of ``model_version`` (once per version: the run key says which)."""
    return RunSpec(
        job_name="reference_profile_job", run_key=f"reference-{model_version}", kind="monitoring",
        run_config={"ops": {"reference_profile": {"config": {"version": model_version}}}},
        tags={"mlops/reference": reference_version(model_version)},
    )


def drift_run(window: str, share: float, ref_version: str, features: list[str], data: LabelledData,
              retraining: RetrainingRun, suffix: str = "", signal: str = "") -> RunSpec:
    """The retraining run for the drift seen on ``window`` (one per window and reference: the run key)."""
    return RunSpec(
        job_name="retrain_job",
        run_key=f"drift-{window.removeprefix('window-')}-{ref_version}{suffix}",
        kind="training",
        triggered_by="drift",
        run_config=retraining.run_config,
        tags={
            "mlops/drift_window": window_label(window),
            "mlops/drift_share": f"{share:.2f}",
            "mlops/reference": ref_version,
            "mlops/drifted_features": ",".join(features)[:200],
            "mlops/source_fingerprint": data.current or "unknown",
            **({"mlops/retrain_signal": signal} if signal else {}),
            **({"mlops/run_config": retraining.source} if retraining.source else {}),
        },
    )


def stale_data_alert(verdict, model_version: str, ref_version: str, data: LabelledData, now: datetime) -> dict:
    text = (
        f"Traffic drifted from the training data of production model {model_version} ({verdict.reason}), "
        f"but the labelled source has no new data since dataset version {data.dataset_version}: retraining "
        "would reproduce the same model. Label recent production images and add them to the source; the "
        "drift sensor retrains as soon as they arrive."
    )
    return {
        "at": now.isoformat(),
        "kind": "drift_without_new_data",
        "window": verdict.window,
        "drift_share": round(float(verdict.drift_share), 4),
        "drifted_features": list(verdict.drifted_features),
        "model_version": model_version,
        "reference": ref_version,
        "dataset_version": data.dataset_version,
        "source_fingerprint": data.current,
        "text": text,
    }


def refused_retrain_alert(verdict, model_version: str, data: LabelledData, now: datetime) -> dict:
    text = (
        f"Traffic drifted from production model {model_version} ({verdict.reason}), and a retraining run on the "
        f"labelled source as it is now was already launched without changing production (its model was refused "
        "by the gate or awaits approval). Retraining again on identical data would do the same: add newly "
        "labelled images, or review the candidate (mlops-registry awaiting / list)."
    )
    return {"at": now.isoformat(), "kind": "retrain_on_same_data_refused", "window": verdict.window,
            "drift_share": round(float(verdict.drift_share), 4), "model_version": model_version,
            "source_fingerprint": data.current, "text": text}


def blind_alert(model_version: str, since: str, minutes: float, now: datetime) -> dict:
    text = (
        f"The drift monitor cannot judge traffic: production model {model_version} has had no reference profile "
        f"since {since[:19]} (longer than {minutes:g} min, drift_policy.blind_alert_minutes). A reference_profile_job "
        f"run for it was requested; check that run (Runs, tag mlops/reference), or materialise reference_profile "
        f"with version {model_version}."
    )
    return {"at": now.isoformat(), "kind": "drift_monitor_blind", "model_version": model_version,
            "reference": reference_version(model_version), "blind_since": since, "text": text}
