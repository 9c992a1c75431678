"""Alert the owner: every failed run leaves an alert line in a file and, when configured, a webhook POST.

The alert file is ``<artifact_root>/alerts/alerts.jsonl`` (one JSON object per line, appended),
or MLOPS_ALERT_FILE. MLOPS_ALERT_WEBHOOK_URL, when set, receives the same object as a JSON POST
(Slack-compatible: it carries a ``text`` field). A webhook that is down or slow is logged and
recorded in the alert file; it never fails the sensor, so the next failure is still reported.
"""

import json
import logging
import os
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from resources import settings
from resources.artifact_store import ArtifactStore

ALERT_FILE_ENV = settings.ALERT_FILE
ALERT_WEBHOOK_ENV = settings.ALERT_WEBHOOK_URL
WEBHOOK_TIMEOUT_S = 5.0
logger = logging.getLogger(__name__)


def alert_path(artifact_store: ArtifactStore) -> Path:
    configured = os.environ.get(ALERT_FILE_ENV)
    return Path(configured).expanduser() if configured else artifact_store.root_path / "alerts" / "alerts.jsonl"


def record_alert(alert: dict[str, Any], path: str | Path, webhook_url: str | None = None) -> list[str]:
    """Append ``alert`` to ``path`` and POST it to ``webhook_url``; the problems met, never an exception."""
    problems: list[str] = []
    if webhook_url:
        try:
            request = urllib.request.Request(
                webhook_url,
                data=json.dumps(alert, default=str).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                if response.status >= 400:
                    problems.append(f"webhook answered HTTP {response.status}")
        except Exception as exc:  # an unreachable webhook must not silence the next alert
            problems.append(f"webhook {webhook_url} failed: {type(exc).__name__}: {exc}")
    line = {**alert, "delivery_problems": problems} if problems else alert
    try:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, default=str, sort_keys=True) + "\n")
    except OSError as exc:
        problems.append(f"alert file {path} not writable: {exc}")
    for problem in problems:
        logger.warning("alert delivery: %s", problem)
    return problems


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
def run_failure_alert(context: dg.RunFailureSensorContext, artifact_store: ArtifactStore) -> None:
    alert = failure_alert(context)
    path = alert_path(artifact_store)
    problems = record_alert(alert, path, os.environ.get(ALERT_WEBHOOK_ENV))
    logger.error(alert["text"])
    if problems:
        logger.warning("alert for run %s recorded with problems: %s", alert["run_id"], "; ".join(problems))
