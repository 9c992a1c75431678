"""How the monitoring loop's sensors are declared: all four tick at one cadence, set in one place."""

from __future__ import annotations

import dagster as dg

from mlops_assets.core.common import settings


def monitoring_sensor(**definition):
    """``dg.sensor`` for the monitoring loop (profiling, drift, feedback, performance alerts): running by default
    and evaluated every MLOPS_SENSOR_INTERVAL_S, so the loop's cadence is one setting (the loop demo and the
    tests shorten it), never a literal beside it."""
    return dg.sensor(
        minimum_interval_seconds=settings.resolve_int(settings.SENSOR_INTERVAL_S),
        default_status=dg.DefaultSensorStatus.RUNNING,
        **definition,
    )
