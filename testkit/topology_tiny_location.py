"""A tiny code location for the production-topology tests and the launch benchmark.

Its job costs almost nothing to run, so what the tests and the benchmark see is Dagster's own
machinery (queue, launcher, storage, monitoring), not the model build. ``held_number`` can be held
open by a file, so a test can keep a run in flight while it kills a process, then release it.
It carries the training tag, like ``build_job``, so the queue's one-training-run limit applies.
"""

import time
from pathlib import Path

import dagster as dg
from pydantic import Field


class HoldConfig(dg.Config):
    hold_file: str = Field(default="", description="While this file exists the asset waits.")
    max_hold_seconds: float = Field(default=120.0, description="Stop waiting after this long anyway.")


@dg.asset(group_name="topology", description="The first step: returns a constant.")
def tiny_number() -> int:
    return 1


@dg.asset(group_name="topology", description="The second step: waits while the hold file exists.")
def held_number(config: HoldConfig, tiny_number: int) -> int:
    deadline = time.monotonic() + config.max_hold_seconds
    while config.hold_file and Path(config.hold_file).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return tiny_number + 1


tiny_job = dg.define_asset_job(
    name="tiny_job",
    selection=[tiny_number, held_number],
    executor_def=dg.in_process_executor,
    tags={"mlops/kind": "training"},
)


@dg.schedule(cron_schedule="* * * * *", job=tiny_job, execution_timezone="UTC")
def every_minute(context: dg.ScheduleEvaluationContext):
    """Ticks every minute so a test can see the scheduler daemon work; it never launches a run."""
    return dg.SkipReason("topology check: the tick is what is being tested")


@dg.sensor(job=tiny_job, minimum_interval_seconds=5)
def tiny_sensor(context: dg.SensorEvaluationContext):
    """Evaluated by the sensor daemon; it never requests a run."""
    return dg.SkipReason("topology check: the tick is what is being tested")


defs = dg.Definitions(assets=[tiny_number, held_number], jobs=[tiny_job], schedules=[every_minute],
                      sensors=[tiny_sensor])
