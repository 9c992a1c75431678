"""Every ended window of the inference log is profiled, or recorded as having had no traffic.

A schedule profiles only the window that just ended: windows from before the daemon started, or while it was
down, stayed "Missing" in the UI forever, indistinguishable from a failure to profile. This sensor works from
its cursor (the last window it handled) through every window that has ended since (oldest first, a bounded
number per tick): a window with logged predictions gets one ``profile_inference_log_job`` run
(``run_key = profile-<window>``, so a retried tick launches it once); a window without any (no part file whose
name's time span overlaps it: a sub-hour window shares its hour's files) is recorded as an ``inference_profiles``
materialization with ``n_rows = 0``, at no cost, and starts no run (on the Docker stack, no container). So "Missing"
means a window that should have been profiled and was not (yet).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_assets.core.common import settings
from mlops_assets.core.monitoring.profile_layout import window_version
from mlops_assets.monitor_stage.windows import profile_partitions
from mlops_assets.run_tags import RUN_KIND_TAG
from resources.artifact_store import ArtifactStore
from sensors.cadence import monitoring_sensor

MAX_WINDOWS_PER_TICK = 500


def grace() -> timedelta:
    """How long after a window ends it is profiled: the service flushes its log every second or so."""
    return timedelta(seconds=settings.resolve_float(settings.PROFILE_GRACE_S))


def evaluate_profiling_tick(cursor: str | None, artifact_store: ArtifactStore, now: datetime) -> dg.SensorResult:
    from mlops_assets.core.serving.inference_log import window_may_hold_rows  # pandas: not at code-location load

    partitions = profile_partitions()
    ended = [key for key in partitions.get_partition_keys(current_time=now - grace()) if cursor is None or key > cursor]
    if not ended:
        return dg.SensorResult(skip_reason=f"no window has ended since {cursor or 'the first monitored window'}")
    batch = ended[:MAX_WINDOWS_PER_TICK]
    profiles = artifact_store.profiles()
    runs, empty = [], []
    for key in batch:
        window = partitions.time_window_for_partition_key(key)
        if profiles.exists(window_version(window.start)):
            continue
        if window_may_hold_rows(artifact_store.root_path, window.start, window.end):
            runs.append(dg.RunRequest(partition_key=key, run_key=f"profile-{key}", tags={RUN_KIND_TAG: "monitoring"}))
        else:
            empty.append(dg.AssetMaterialization(
                asset_key="inference_profiles", partition=key, description="no prediction was logged in this window",
                metadata={"version": window_version(window.start), "n_rows": 0, "profile_written": False},
            ))
    more = f"; {len(ended) - len(batch)} more on the next tick" if len(ended) > len(batch) else ""
    summary = (f"windows {batch[0]} … {batch[-1]}: {len(runs)} to profile, {len(empty)} without traffic "
               f"recorded as empty{more}")
    return dg.SensorResult(
        run_requests=runs, asset_events=empty, cursor=batch[-1],
        skip_reason=None if runs else summary,
    )


@monitoring_sensor(
    name="inference_profiling_sensor",
    job_name="profile_inference_log_job",
    description=(
        "Profiles every ended window of the inference log (one run per window with traffic), and records "
        "windows without traffic as empty, from the first monitored window on: no window is left Missing."
    ),
)
def inference_profiling_sensor(context: dg.SensorEvaluationContext, artifact_store: ArtifactStore) -> dg.SensorResult:
    result = evaluate_profiling_tick(context.cursor, artifact_store, datetime.now(UTC))
    if result.run_requests:
        context.log.info(f"profiling {len(result.run_requests)} window(s)")
    return result
