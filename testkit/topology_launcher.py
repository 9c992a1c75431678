"""The run launcher of the process topology: Dagster's DefaultRunLauncher plus a worker health check.

In production ``DockerRunLauncher`` runs each run in a container and implements
``check_run_worker_health`` (is the container still running?), so the daemon's run monitoring
(``run_monitoring`` in deploy/dagster.yaml) marks a run whose worker died as failed. Without Docker
the run worker is a child process of the code server that launched it (DefaultRunLauncher), and
DefaultRunLauncher has no health check, so such a run would stay STARTED forever. This subclass adds
the equivalent check: the code server recorded in the run's tags must still be running the run.
"""

from __future__ import annotations

import json

from dagster import DagsterRun, DefaultRunLauncher, deserialize_value

from testkit.dagster_private import (
    GRPC_INFO_TAG,
    CanCancelExecutionRequest,
    CanCancelExecutionResult,
    CheckRunHealthResult,
    DagsterGrpcClient,
    DagsterUserCodeUnreachableError,
    WorkerStatus,
)


class ProcessRunLauncher(DefaultRunLauncher):
    """Launch runs in the code server's process tree; report a run whose worker is gone."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        info = json.loads(run.tags.get(GRPC_INFO_TAG) or "{}")
        if not info:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run records no code server")
        where = f"{info.get('host')}:{info.get('port') or info.get('socket')}"
        client = DagsterGrpcClient(host=info.get("host", "localhost"), port=info.get("port"),
                                   socket=info.get("socket"), use_ssl=info.get("use_ssl", False))
        try:
            result = deserialize_value(
                client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id), timeout=5),
                CanCancelExecutionResult,
            )
        except DagsterUserCodeUnreachableError:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"the code server at {where} that ran the run worker is unreachable")
        if result.can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"running in the code server at {where}")
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the code server at {where} no longer runs this run (it was restarted)")
