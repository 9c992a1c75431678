"""Run launch latency and a tiny run's end-to-end time: the production topology on PostgreSQL vs the
embedded SQLite default.

Both topologies are the same processes (a gRPC code server for the tiny test location, the webserver,
the daemon, runs launched in the code server's process tree); only the instance differs:
deploy/dagster.yaml on a fresh PostgreSQL database (testkit/topology.py) or the top-level
dagster.yaml (SQLite under a temporary DAGSTER_HOME). Runs are submitted one after the other through
GraphQL and timed from their own events:

- queued → starting: the daemon's queue picked the run (bounded by ``dequeue_interval_seconds``);
- starting → started: the code server started the run worker and it opened the instance;
- queued → started: both, the launch latency a user waits;
- started → success: the two tiny steps inside the worker;
- submit → success: what a user sees, from the GraphQL call to the run's success event.

Usage: ``python -m benchmarks.bench_launch [--runs 10]``; writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine, write_section
from testkit.topology import (
    TINY,
    Topology,
    embedded_instance_config,
    fresh_database,
    pg_env,
    production_instance_config,
    running,
)

RUN_EVENTS = """
query($runId: ID!) { logsForRun(runId: $runId) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { timestamp } } } } }
"""
PHASES = {
    "queued → starting": ("RunEnqueuedEvent", "RunStartingEvent"),
    "starting → started (run worker start)": ("RunStartingEvent", "RunStartEvent"),
    "queued → started (launch latency)": ("RunEnqueuedEvent", "RunStartEvent"),
    "started → success (in the worker)": ("RunStartEvent", "RunSuccessEvent"),
}


def event_times(topo: Topology, run_id: str) -> dict[str, float]:
    events = topo.graphql(RUN_EVENTS, {"runId": run_id})["logsForRun"]["events"]
    return {e["__typename"]: float(e["timestamp"]) / 1000 for e in events if "timestamp" in e}


def time_runs(topo: Topology, runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in [*PHASES, "submit → success (end to end)"]}
    for i in range(runs + 1):  # the first run warms the code server and the webserver up
        submitted = time.time()
        run_id = topo.client.submit_job_execution(
            "tiny_job", repository_location_name=TINY.name, repository_name="__repository__")
        status = topo.wait_run(run_id, timeout=120)
        if status != "SUCCESS":
            raise RuntimeError(f"run {run_id} {status}\n{topo.logs()}")
        if i == 0:
            continue
        times = event_times(topo, run_id)
        for name, (start, end) in PHASES.items():
            samples[name].append(times[end] - times[start])
        samples["submit → success (end to end)"].append(times["RunSuccessEvent"] - submitted)
    return samples


def measure(kind: str, runs: int) -> dict[str, list[float]]:
    root = Path(tempfile.mkdtemp(prefix=f"bench_launch_{kind}_"))
    if kind == "postgres":
        with fresh_database("mlops_bench") as db:
            # As deployed: run monitoring at its production interval, not the tests' faster one.
            topo = Topology(root, production_instance_config(monitoring_poll_seconds=None), [TINY], pg_env(db))
            with running(topo):
                return time_runs(topo, runs)
    topo = Topology(root, embedded_instance_config(root / "dagster_home"), [TINY])
    with running(topo):
        return time_runs(topo, runs)


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{statistics.median(values):.2f} / {p90:.2f} / {max(values):.2f}"


def render(results: dict[str, dict[str, list[float]]], runs: int) -> str:
    import dagster

    intervals = {production_instance_config()["run_coordinator"]["config"]["dequeue_interval_seconds"],
                 embedded_instance_config(Path("."))["run_coordinator"]["config"]["dequeue_interval_seconds"]}
    lines = [
        "## Run launch: production topology (PostgreSQL) vs embedded default (SQLite)",
        "",
        f"`python -m benchmarks.bench_launch --runs {runs}` on {machine()}, dagster {dagster.__version__}. "
        f"{runs} runs of the two-step `tiny_job` (testkit/topology_tiny_location.py, in-process executor), "
        "one after the other, through the webserver's GraphQL API; a gRPC code server, the webserver and the "
        "daemon in both cases, runs launched as processes by the code server. Seconds, "
        "median / p90 / max, from the runs' own events.",
        "",
        "| phase | PostgreSQL (deploy/dagster.yaml) | SQLite (dagster.yaml) |",
        "|---|---|---|",
    ]
    for phase in results["postgres"]:
        lines.append(f"| {phase} | {summary(results['postgres'][phase])} | {summary(results['sqlite'][phase])} |")
    lines += [
        "",
        f"The queues poll every {' / '.join(str(i) for i in sorted(intervals))} s (`dequeue_interval_seconds`), "
        "which bounds queued → starting. Starting → started is the launch through the code server and the "
        "run worker's start: a new process importing Dagster and the code location, then opening the "
        "instance (a PostgreSQL connection and schema check, or the SQLite files); started → success is "
        "the tiny steps writing their events, one round trip to the database each.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    results = {kind: measure(kind, args.runs) for kind in ("postgres", "sqlite")}
    section = render(results, args.runs)
    print(section)
    if not args.no_write:
        write_section("bench_launch", section)


if __name__ == "__main__":
    main()
