"""The monitoring windows as Dagster partitions: one definition for the profiles, the drift report and the
profiling sensor (hourly unless MLOPS_PROFILE_CRON sets another cadence, from MLOPS_MONITOR_START on)."""

import dagster as dg

from mlops_assets.core.common import settings
from mlops_assets.core.monitoring.profile_layout import window_start

HOURLY = "0 * * * *"
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"  # the windows' partition keys (hourly and cron windows alike)


def profile_partitions() -> dg.TimeWindowPartitionsDefinition:
    """Hourly windows by default; MLOPS_PROFILE_CRON sets another cadence (e.g. "*/5 * * * *" for a demo)."""
    cron = settings.resolve(settings.PROFILE_CRON)
    start = settings.resolve(settings.MONITOR_START)
    if cron == HOURLY:
        return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC")
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=cron, start=start, fmt="%Y-%m-%d-%H:%M", timezone="UTC"
    )


def partition_key(window_version: str) -> str:
    """The partition key of a profile window's version ("window-20261122T1000" → "2026-11-22-10:00")."""
    return window_start(window_version).strftime(PARTITION_FORMAT)
