"""Alert the owner: every failed run leaves an alert in the alert sink (a file and, when configured, a webhook)."""

import logging
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from resources.alerts import AlertSink

logger = logging.getLogger(__name__)


def failure_alert(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    run = context.dagster_run
    steps = {}
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        while error is not None and error.cause is not None:  # the user's exception, not Dagster's wrapper
            error = error.cause
        steps[event.step_key or "?"] = (error.message.strip() if error else "unknown error")[:500]
    message = context.failure_event.message or "run failed"
    failed = "; ".join(f"{step}: {error}" for step, error in steps.items()) or message
    return {
        "at": datetime.now(UTC).isoformat(),
        "kind": "run_failure",
        "job": run.job_name,
        "run_id": run.run_id,
        "tags": dict(run.tags),
        "failed_steps": steps,
        "message": message[:1000],
        "text": f"Dagster run {run.run_id[:8]} of {run.job_name} failed: {failed[:300]}",
    }


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records an alert (file, and webhook if MLOPS_ALERT_WEBHOOK_URL is set) for every failed run.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alert_sink: AlertSink) -> None:
    alert = failure_alert(context)
    problems = alert_sink.send(alert)
    logger.error(alert["text"])
    if problems:
        logger.warning("alert for run %s recorded with problems: %s", alert["run_id"], "; ".join(problems))
