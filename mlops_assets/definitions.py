"""The code location: assembles the stages into one Definitions, and nothing else."""

from __future__ import annotations

import dagster as dg

from mlops_assets import data, evaluation, monitoring, packaging, registration, serving, training, validation
from mlops_assets.jobs import build_job, weekly_rebuild_schedule
from mlops_assets.resources_config import default_resources
from sensors.alerts import run_failure_alert
from sensors.drift_sensor import drift_sensor

ASSETS = [
    *dg.load_assets_from_modules([data, training, packaging, evaluation, registration, serving]),
    *monitoring.monitor_assets,
]
ASSET_CHECKS = [
    *validation.data_quality_checks,
    packaging.onnx_matches_torch,
    registration.promoted_to_production,
    serving.bento_application_test,
]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[build_job, serving.deploy_job, serving.rollback_job, *monitoring.monitor_jobs],
    schedules=[weekly_rebuild_schedule, *monitoring.monitor_schedules],
    sensors=[drift_sensor, run_failure_alert],
    resources=default_resources(),
    # Runs launched from the UI (a re-materialisation, the launchpad) use the same in-process
    # executor as build_job: a process per step costs seconds of CPU each (BENCHMARKS.md).
    executor=dg.in_process_executor,
)
