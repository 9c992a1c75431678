"""Where alerts for a person go: a JSON-lines file and, when configured, a webhook.

The file is ``<artifact_root>/alerts/alerts.jsonl`` unless MLOPS_ALERT_FILE says otherwise (one JSON object per
line, appended). MLOPS_ALERT_WEBHOOK_URL, when set, receives the same object as a JSON POST (Slack-compatible:
it carries a ``text`` field); it is a secret, so Dagster reads it through ``EnvVar``. A webhook that is down or
slow is logged and recorded in the file; it never raises, so the next alert is still delivered.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings

WEBHOOK_TIMEOUT_S = 5.0
logger = logging.getLogger(__name__)


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
        except Exception as exc:  # noqa: BLE001 - an unreachable webhook must not silence the next alert
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


class AlertSink(dg.ConfigurableResource):
    """Alerts for a person: run failures, drift without new labelled data."""

    file: str = Field(description="JSON-lines file every alert is appended to.")
    webhook_url: str = Field(
        default=settings.default_value(settings.ALERT_WEBHOOK_URL),
        description="POST each alert here as JSON (empty: file only).",
    )

    def send(self, alert: dict[str, Any]) -> list[str]:
        """Deliver ``alert``; the delivery problems met (empty when all went well), never an exception."""
        return record_alert(alert, Path(self.file).expanduser(), self.webhook_url or None)
