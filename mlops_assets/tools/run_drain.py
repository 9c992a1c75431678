"""A demo's instance left clean: sensors stopped, runs in flight finished or cancelled, none left as FAILURE.

The loop demo stops its own webserver and daemon at the end; a run that its shutdown interrupted would stay red
on the instance that ``make loop-demo-ui`` reopens. Draining through the webserver's GraphQL endpoint first
leaves every run SUCCESS or CANCELED.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlops_assets.infra.local_stack import graphql

RUNS = """
query ($filter: RunsFilter) { runsOrError(filter: $filter, limit: 20) { ... on Runs { results {
  runId jobName status tags { key value } } } } }
"""

IN_FLIGHT = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED"]
SENSORS = """
query { sensorsOrError(repositorySelector: {repositoryLocationName: "mlops", repositoryName: "__repository__"}) {
  ... on Sensors { results { id name sensorState { status } } } } }
"""
STOP_SENSOR = "mutation ($id: String!) { stopSensor(id: $id) { __typename } }"
TERMINATE = "mutation ($runId: String!) { terminateRun(runId: $runId) { __typename } }"


def drain_runs(ui: str, say: Callable[[str], None] = print, finish_s: float = 30.0,
               cancel_s: float = 20.0) -> None:
    """Stop the sensors (no new run), let the runs in flight finish, and cancel what still runs after ``finish_s``
    (waiting ``cancel_s`` for it to end): every run the demo leaves has ended as SUCCESS or CANCELED, no FAILURE."""

    def in_flight(statuses: list[str]) -> list[dict[str, Any]]:
        return graphql(ui, RUNS, {"filter": {"statuses": statuses}})["runsOrError"]["results"]

    try:
        for sensor in graphql(ui, SENSORS)["sensorsOrError"]["results"]:
            if sensor["sensorState"]["status"] == "RUNNING":
                graphql(ui, STOP_SENSOR, {"id": sensor["id"]})
        deadline = time.monotonic() + finish_s
        while (running := in_flight(IN_FLIGHT)) and time.monotonic() < deadline:
            time.sleep(1.0)
        for run in running:
            graphql(ui, TERMINATE, {"runId": run["runId"]})
            say(f"cancelling {run['jobName']} run {run['runId'][:8]}: still running at the demo's end")
        deadline = time.monotonic() + cancel_s
        while running and in_flight([*IN_FLIGHT, "CANCELING"]) and time.monotonic() < deadline:
            time.sleep(1.0)
    except (OSError, RuntimeError) as exc:  # the webserver is gone already: nothing left to drain through it
        say(f"could not wait for the runs in flight: {exc}")
