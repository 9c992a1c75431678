"""Jobs and schedules of the build stage."""

from __future__ import annotations

import dagster as dg

# Every run says what kind of work it is; the run queue allows one "training" run at a time
# (dagster.yaml, deploy/dagster.yaml) and the drift sensor waits while one is in flight.
RUN_KIND_TAG = "mlops/kind"

# In-process: the build is a chain of seven steps on one small dataset, and each multiprocess
# step pays ~3 s of process start-up on a 2-core machine (see BENCHMARKS.md).
build_job = dg.define_asset_job(
    name="build_job",
    selection=dg.AssetSelection.groups("build"),
    executor_def=dg.in_process_executor,
    tags={RUN_KIND_TAG: "training"},
    description="Images → splits → data checks → model → ONNX → evaluation → registry (with the gate).",
)

weekly_rebuild_schedule = dg.ScheduleDefinition(
    name="weekly_rebuild",
    job=build_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Rebuild the model every Monday 03:00 UTC on whatever the image source holds then.",
)
