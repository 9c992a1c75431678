"""Every use of a Dagster private name (``dagster._…``), in one place, checked against the version it was written for.

Dagster 1.13 offers no public way to do what the test kit needs here, and only the test kit needs it (the product
uses Dagster's public API; ``tests/test_architecture.py`` fails on a ``dagster._`` import anywhere else):

- a run worker's health check for the process topology's run launcher (``testkit/topology_launcher.py``, what
  DockerRunLauncher does for containers): ``CheckRunHealthResult`` and ``WorkerStatus`` (the return type of the
  public ``RunLauncher.check_run_worker_health``), the run's code-server tag ``GRPC_INFO_TAG``, and asking that
  code server whether it still runs the run: ``DagsterGrpcClient.can_cancel_execution`` with
  ``CanCancelExecutionRequest``/``CanCancelExecutionResult``, ``DagsterUserCodeUnreachableError`` when it is gone;
- waiting for a code server to serve (``testkit/topology.py``): ``DagsterGrpcClient.list_repositories``;
- validating ``deploy/dagster.yaml`` against Dagster's own schema (``tests/test_deploy_config.py``): the instance
  config loader ``dagster_instance_config`` and the config processing ``process_config`` with
  ``resolve_to_config_type``, which build a run launcher from its YAML config as the instance does.

GraphQL needs none: the one helper (``mlops_assets/infra/local_stack.py: graphql``) POSTs to the webserver's
public ``/graphql`` endpoint. ``tests/test_dagster_private.py`` fails when an upgrade removes or changes any of these.
"""

from __future__ import annotations

from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult

WRITTEN_FOR = "1.13.27"  # also pinned in pyproject.toml

__all__ = [
    "WRITTEN_FOR",
    "CanCancelExecutionRequest",
    "CanCancelExecutionResult",
    "CheckRunHealthResult",
    "DagsterGrpcClient",
    "DagsterUserCodeUnreachableError",
    "GRPC_INFO_TAG",
    "WorkerStatus",
    "dagster_instance_config",
    "installed_version",
    "process_config",
    "resolve_to_config_type",
]


def installed_version() -> str:
    from importlib.metadata import version

    return version("dagster")
