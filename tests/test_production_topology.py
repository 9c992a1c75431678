"""The production topology as real processes, on PostgreSQL, driven through the webserver's GraphQL API.

One topology for the module (fresh database on the local PostgreSQL server, two gRPC code servers:
the product's ``mlops`` location and the tiny test location, the webserver, the daemon), instance
configuration derived from deploy/dagster.yaml (see testkit/topology.py). The tests share it in
file order: build_job end to end, the daemon ticking schedules and sensors, then the two fault tests,
which kill the daemon and a code server and bring them back.
"""

import json
import os
import time
from pathlib import Path

import pytest

from testkit.topology import (
    FAST_BUILD,
    PRODUCT,
    REEXECUTE,
    TINY,
    Topology,
    fresh_database,
    holds_for,
    pg_connect,
    pg_env,
    production_instance_config,
    running,
    sql,
    wait_until,
)

pytestmark = pytest.mark.slow

REPOSITORY = "__repository__"
DEQUEUE_SECONDS = production_instance_config()["run_coordinator"]["config"]["dequeue_interval_seconds"]


def _postgres_available() -> bool:
    try:
        pg_connect().close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    if not _postgres_available():
        reason = "no PostgreSQL server at 127.0.0.1:5432 (user postgres)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the production topology tests")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("topology")
    with fresh_database() as db:
        topo = Topology(root, production_instance_config(), [PRODUCT, TINY], pg_env(db), database=db)
        with running(topo):
            yield topo


def submit(topo: Topology, location, job: str, run_config: dict | None = None) -> str:
    return topo.client.submit_job_execution(
        job, repository_location_name=location.name, repository_name=REPOSITORY, run_config=run_config or {})


def event_types(topo: Topology, run_id: str) -> list[str]:
    rows = sql(topo.database, "SELECT dagster_event_type FROM event_logs WHERE run_id = %s "
                        "AND dagster_event_type IS NOT NULL ORDER BY id", (run_id,))
    return [row[0] for row in rows]


def event_time(topo: Topology, run_id: str, event_type: str) -> float:
    rows = sql(topo.database, "SELECT extract(epoch FROM timestamp) FROM event_logs WHERE run_id = %s "
                        "AND dagster_event_type = %s ORDER BY id", (run_id, event_type))
    assert len(rows) == 1, f"{event_type} of {run_id}: {len(rows)} events"
    return float(rows[0][0])


def run_failure_message(topo: Topology, run_id: str) -> str:
    rows = sql(topo.database, "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                        "'PIPELINE_FAILURE'", (run_id,))
    assert rows, f"no run-failure event for {run_id}"
    return json.loads(rows[-1][0])["dagster_event"]["message"]


def tiny_config(hold_file: Path | None = None) -> dict:
    return {"ops": {"held_number": {"config": {"hold_file": str(hold_file or "")}}}}


# ---------------------------------------------------------------- the product's build job


def test_build_job_through_graphql_lands_in_postgres(topology):
    from mlops_assets.definitions import defs

    started = time.monotonic()
    run_id = submit(topology, PRODUCT, "build_job", FAST_BUILD)
    status = topology.wait_run(run_id, timeout=240)
    assert status == "SUCCESS", topology.logs()

    (row,) = sql(topology.database, "SELECT pipeline_name, status, run_body FROM runs WHERE run_id = %s", (run_id,))
    assert row[:2] == ("build_job", "SUCCESS")
    assert json.loads(row[2])["tags"]["mlops/kind"] == "training"

    types = event_types(topology, run_id)
    for expected in ("PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START",
                     "PIPELINE_SUCCESS"):
        assert types.count(expected) == 1, (expected, types)
    assert "STEP_FAILURE" not in types

    expected_assets = {key.to_user_string() for key in
                       defs.resolve_job_def("build_job").asset_layer.selected_asset_keys}
    materialised = {json.loads(key)[0] if key.startswith("[") else key for (key,) in sql(
        topology.database, "SELECT asset_key FROM event_logs WHERE run_id = %s "
                     "AND dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))}
    assert materialised == expected_assets
    # The asset index (what the UI's asset pages read) points at this run.
    indexed = {json.loads(key)[0]: last_run for key, last_run in sql(
        topology.database, "SELECT asset_key, last_run_id FROM asset_keys")}
    assert all(indexed.get(key) == run_id for key in expected_assets), indexed
    checks = sql(topology.database, "SELECT check_name, execution_status FROM asset_check_executions "
                              "WHERE run_id = %s", (run_id,))
    assert checks and all(status == "SUCCEEDED" for _, status in checks), checks
    # The artifacts went where the shared settings point, not into the repository.
    assert any((topology.root / "mlops" / "artifacts").iterdir())
    print(f"build_job via GraphQL on PostgreSQL: {time.monotonic() - started:.1f} s")


# ---------------------------------------------------------------- daemon: schedules and sensors

START_SCHEDULE = """
mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }
"""
SCHEDULE_TICKS = """
query($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
  ... on Schedule { scheduleState { status ticks(limit: 5) { status skipReason error { message } } } } } }
"""
START_SENSOR = """
mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }
"""
SENSOR_TICKS = """
query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { status ticks(limit: 5) { status skipReason error { message } } } } } }
"""
LIST_SENSORS = """
query($selector: RepositorySelector!) { sensorsOrError(repositorySelector: $selector) {
  ... on Sensors { results { name } } } }
"""


def start_schedule(topo: Topology, location, name: str) -> dict:
    selector = {"repositoryLocationName": location.name, "repositoryName": REPOSITORY, "scheduleName": name}
    result = topo.graphql(START_SCHEDULE, {"selector": selector})["startSchedule"]
    assert result["__typename"] == "ScheduleStateResult", result
    assert result["scheduleState"]["status"] == "RUNNING"
    return selector


def start_sensor(topo: Topology, location, name: str) -> dict:
    selector = {"repositoryLocationName": location.name, "repositoryName": REPOSITORY, "sensorName": name}
    result = topo.graphql(START_SENSOR, {"selector": selector})["startSensor"]
    assert result["__typename"] == "Sensor", result
    assert result["sensorState"]["status"] == "RUNNING"
    return selector


def ticks(topo: Topology, query: str, root: str, state: str, selector: dict) -> list[dict]:
    """The instigator's ticks that have finished (a tick being evaluated shows as STARTED first)."""
    return [tick for tick in topo.graphql(query, {"selector": selector})[root][state]["ticks"]
            if tick["status"] != "STARTED"]


def test_schedules_turned_on_through_graphql_are_ticked_by_the_daemon(topology):
    weekly = start_schedule(topology, PRODUCT, "weekly_rebuild")
    minutely = start_schedule(topology, TINY, "every_minute")
    # The instigator state is in PostgreSQL, where the scheduler daemon reads it.
    (count,) = sql(topology.database, "SELECT count(*) FROM instigators WHERE status = 'RUNNING' "
                                "AND instigator_type = 'SCHEDULE'")[0]
    assert count == 2
    # weekly_rebuild's next tick is next Monday 03:00 UTC; the tiny location's ticks every minute,
    # which shows the scheduler daemon evaluating schedules of gRPC locations on this instance.
    tick = wait_until(lambda: ticks(topology, SCHEDULE_TICKS, "scheduleOrError", "scheduleState", minutely),
                      timeout=90, what="a tick of every_minute", interval=1)[0]
    assert tick["status"] == "SKIPPED" and "tick is what is being tested" in tick["skipReason"], tick
    assert ticks(topology, SCHEDULE_TICKS, "scheduleOrError", "scheduleState", weekly) == []
    (stored,) = sql(topology.database, "SELECT count(*) FROM job_ticks WHERE type = 'SCHEDULE'")[0]
    assert stored >= 1


def test_sensor_turned_on_through_graphql_is_ticked_by_the_daemon(topology):
    selector = start_sensor(topology, TINY, "tiny_sensor")
    tick = wait_until(lambda: ticks(topology, SENSOR_TICKS, "sensorOrError", "sensorState", selector),
                      timeout=60, what="a tick of tiny_sensor", interval=1)[0]
    assert tick["status"] == "SKIPPED", tick


def test_the_drift_sensor_is_ticked_by_the_daemon(topology):
    repo = {"repositoryLocationName": PRODUCT.name, "repositoryName": REPOSITORY}
    # the location's sensors as the webserver lists them; waited for with a deadline (it may still be loading), and
    # an empty or drift-less list is a failure: the product defines the drift sensor
    names = wait_until(
        lambda: [s["name"] for s in topology.graphql(LIST_SENSORS, {"selector": repo})["sensorsOrError"]["results"]],
        timeout=60, what="the mlops code location's sensors in the webserver", interval=1)
    assert "drift_sensor" in names, names
    for name in names:
        selector = start_sensor(topology, PRODUCT, name)
        tick = wait_until(lambda s=selector: ticks(topology, SENSOR_TICKS, "sensorOrError", "sensorState", s),
                          timeout=60, what=f"a tick of {name}", interval=1)[0]
        # Nothing is deployed in this fresh home, so a drift sensor skips (or requests a run); it must not crash.
        assert tick["status"] in ("SKIPPED", "SUCCESS"), (name, tick)


# ---------------------------------------------------------------- faults


def test_daemon_killed_while_a_run_is_queued_launches_it_exactly_once(topology, tmp_path):
    hold = tmp_path / "hold"
    hold.touch()
    first = submit(topology, TINY, "tiny_job", tiny_config(hold))
    topology.wait_run(first, timeout=60, statuses={"STARTED"})
    # Same training tag: the queue holds the second run while the first runs (limit 1).
    second = submit(topology, TINY, "tiny_job", tiny_config())
    window = 2 * DEQUEUE_SECONDS + 1
    holds_for(lambda: topology.run_status(second) == "QUEUED", window, "the training limit holding run 2")

    topology.processes["daemon"].kill()
    hold.unlink()
    assert topology.wait_run(first, timeout=60) == "SUCCESS"
    # No daemon, no dequeue: the second run waits in PostgreSQL, neither lost nor started.
    holds_for(lambda: topology.run_status(second) == "QUEUED", window, "run 2 queued without a daemon")

    topology.start_daemon()
    assert topology.wait_run(second, timeout=90) == "SUCCESS", topology.logs()
    types = event_types(topology, second)
    for once in ("PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START",
                 "PIPELINE_SUCCESS"):
        assert types.count(once) == 1, (once, types)
    assert event_time(topology, second, "PIPELINE_START") > event_time(topology, first, "PIPELINE_SUCCESS")
    (runs,) = sql(topology.database, "SELECT count(*) FROM runs WHERE run_id IN (%s, %s)", (first, second))[0]
    assert runs == 2
    topology.wait_daemon()


def test_code_server_killed_mid_run_fails_the_run_and_reexecution_finishes_it(topology, tmp_path):
    hold = tmp_path / "hold"
    hold.touch()
    run_id = submit(topology, TINY, "tiny_job", tiny_config(hold))
    wait_until(lambda: "STEP_START" in event_types(topology, run_id) and
               event_types(topology, run_id).count("STEP_SUCCESS") == 1,
               timeout=60, what="tiny_number done and held_number running")

    topology.processes[TINY.name].kill()  # the code server and the run worker it started
    hold.unlink()
    assert topology.wait_run(run_id, timeout=60) == "FAILURE"
    reason = run_failure_message(topology, run_id)
    assert "Detected run worker status FAILED" in reason and "unreachable" in reason, reason

    topology.start_code_server(TINY)
    topology.wait_code_server(TINY)
    topology.client.reload_repository_location(TINY.name)
    result = topology.graphql(REEXECUTE, {"params": {"parentRunId": run_id, "strategy": "FROM_FAILURE"}})
    launched = result["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    child = launched["run"]["runId"]
    assert topology.wait_run(child, timeout=90) == "SUCCESS", topology.logs()
    steps = [key for (key,) in sql(topology.database, "SELECT step_key FROM event_logs WHERE run_id = %s "
                                                "AND dagster_event_type = 'STEP_START'", (child,))]
    assert steps == ["held_number"], steps  # tiny_number's output is reused, not recomputed
    (body,) = sql(topology.database, "SELECT run_body FROM runs WHERE run_id = %s", (child,))[0]
    assert json.loads(body)["parent_run_id"] == run_id
