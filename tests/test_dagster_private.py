"""Dagster's private names the test kit relies on still exist with the shape it relies on: an upgrade that changes
them fails here, not in the middle of a topology test (see testkit/dagster_private.py)."""

import inspect
import socket

import dagster as dg

from testkit import dagster_private as private


def test_the_installed_dagster_is_the_version_the_private_uses_were_written_for():
    assert private.installed_version() == private.WRITTEN_FOR == dg.__version__


def test_a_run_launcher_reports_worker_health_with_these_types():
    assert {"RUNNING", "FAILED", "UNKNOWN"} <= {status.name for status in private.WorkerStatus}
    result = private.CheckRunHealthResult(private.WorkerStatus.FAILED, "gone")
    assert (result.status, result.msg) == (private.WorkerStatus.FAILED, "gone")
    assert "supports_check_run_worker_health" in dir(dg.DefaultRunLauncher)
    assert list(inspect.signature(dg.DefaultRunLauncher.check_run_worker_health).parameters) == ["self", "run"]


def test_a_run_records_its_code_server_under_the_grpc_info_tag():
    assert private.GRPC_INFO_TAG == ".dagster/grpc_info"


def test_a_code_server_that_is_gone_is_reported_unreachable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = private.DagsterGrpcClient(host="127.0.0.1", port=port)
    request = private.CanCancelExecutionRequest(run_id="r")
    try:
        client.can_cancel_execution(request, timeout=2)
    except private.DagsterUserCodeUnreachableError:
        pass
    else:
        raise AssertionError("an unreachable code server was not reported as DagsterUserCodeUnreachableError")
    assert callable(client.list_repositories)  # what topology.py waits on
    answer = dg.deserialize_value(
        dg.serialize_value(private.CanCancelExecutionResult(can_cancel=True)), private.CanCancelExecutionResult
    )
    assert answer.can_cancel is True


def test_the_instance_config_loader_and_the_config_processing_still_validate(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config, _ = private.dagster_instance_config(str(tmp_path))
    assert config["telemetry"] == {"enabled": False}
    processed = private.process_config(private.resolve_to_config_type(dg.Shape({"n": dg.Field(int)})), {"n": 3})
    assert processed.success and processed.value == {"n": 3}
    refused = private.process_config(private.resolve_to_config_type(dg.Shape({"n": dg.Field(int)})), {"n": "x"})
    assert not refused.success
