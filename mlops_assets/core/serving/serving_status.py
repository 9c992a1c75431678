"""What each worker of the running service reports it serves, as files on the artifact volume.

Why files: on the Docker stack the service sits on a network of its own (``deploy/docker-compose.yaml``) and nothing of
Dagster's can reach it, by design; but it shares the artifact volume with the code server, which logs its predictions
there already. Each worker writes ``serving/status-<host>-<pid>.json`` (what ``GET /model`` says: the version, its tag,
since when, the production pointer it saw, the shadow it mirrors to, the last swap error) when that changes and at least
every :data:`HEARTBEAT_SECONDS`; ``served_model_sensor`` reads the fresh ones when ``MLOPS_SERVICE_URL`` is empty. A
worker that stopped writing (killed, its container gone) drops out after :data:`STALE_SECONDS`.

Writes are atomic (temporary file, fsync, rename): a reader never sees half a status. No Dagster here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_assets.core.common.storage import atomic_write_json

STATUS_DIR = "serving"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 3 * HEARTBEAT_SECONDS
# shadow_version: the version scoring the mirrored requests beside the served one (None: no shadow)
REPORTED = ("version", "tag", "loaded_at", "source", "production_version", "shadow_version", "swap_error",
            "worker_pid")


def status_dir(artifact_root: str | Path) -> Path:
    return Path(artifact_root) / STATUS_DIR


def status_path(artifact_root: str | Path, host: str | None = None, pid: int | None = None) -> Path:
    """This worker's file (host name and process id: several workers, several containers, one folder)."""
    return status_dir(artifact_root) / f"status-{host or socket.gethostname()}-{pid or os.getpid()}.json"


def write_status(path: Path, status: dict[str, Any], now: float | None = None) -> None:
    """Write what the worker serves, stamped with the time of writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {**{key: status.get(key) for key in REPORTED},
                             "written_at": time.time() if now is None else now})


@dataclass(frozen=True)
class ServiceReport:
    """The fresh workers' statuses, or why there is none to read (``problem``)."""

    statuses: list[dict[str, Any]]
    problem: str | None = None

    def served(self) -> dict[str, Any] | str:
        """What the service answers with, as ``GET /model`` says it; or why that cannot be said."""
        if self.problem:
            return self.problem
        versions = sorted({status["version"] for status in self.statuses if status.get("version")})
        if not versions:
            return f"{len(self.statuses)} worker(s) of the service report serving no model yet"
        if len(versions) > 1:
            return f"the service's workers answer with different versions ({', '.join(versions)}): a swap under way"
        newest = max(self.statuses, key=lambda status: status.get("loaded_at") or "")
        return {**newest, "workers": len(self.statuses)}


def read_statuses(artifact_root: str | Path, now: float | None = None,
                  stale_seconds: float = STALE_SECONDS) -> ServiceReport:
    """The statuses written in the last ``stale_seconds``; unreadable files are skipped (one being replaced)."""
    directory = status_dir(artifact_root)
    now = time.time() if now is None else now
    fresh: list[dict[str, Any]] = []
    for path in sorted(directory.glob("status-*.json")) if directory.is_dir() else []:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if now - float(status.get("written_at", 0)) <= stale_seconds:
            fresh.append(status)
    if not fresh:
        return ServiceReport([], f"no worker of the service has reported what it serves in {directory} within "
                                 f"{stale_seconds:.0f} s (is the service running, with MLOPS_ARTIFACT_ROOT "
                                 "on the same volume?)")
    return ServiceReport(fresh)
