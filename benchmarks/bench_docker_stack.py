"""The Docker production stack: start time (cold build, warm), run launch latency in containers vs
the process topology, image sizes.

- start: ``deploy/scripts/stack.sh up`` (what ``make deploy-up`` runs) until the webserver serves the
  loaded code location and the daemon's loops are healthy. Warm: images and build cache present.
  ``--cold`` first removes the stack's images (not the base image, not the wheelhouse: their own
  scripts' times are reported beside), so the build runs from the base.
- launch latency: ``build_job`` submitted over GraphQL, one run after another (the first warms up and
  builds the model; the next ones find their inputs unchanged, so the steps are short), timed from the
  runs' own events, on the Docker stack (DockerRunLauncher: a new container per run) and on the process
  topology of testkit/topology.py (the same deploy/dagster.yaml on the local PostgreSQL, runs launched
  as processes by the code server), in the same session.
- image sizes: ``docker image inspect``.

Usage: ``python -m benchmarks.bench_docker_stack [--runs 5] [--cold]``; needs a Docker engine
(deploy/scripts/start_engine.sh) and no stack named ``mlops`` on it; writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_launch import PHASES, event_times, summary
from benchmarks.report import machine, write_section
from testkit.docker_stack import DockerStack, docker, engine_problem, leftovers
from testkit.topology import (
    FAST_BUILD,
    PRODUCT,
    Topology,
    fresh_database,
    pg_env,
    production_instance_config,
    running,
)

STACK_IMAGES = ["mlops-user-code", "mlops-dagster", "mlops-postgres"]
ALL_IMAGES = [*STACK_IMAGES, "mlops-base:bookworm", "python:3.11-slim", "postgres:16"]


def time_build_runs(target, runs: int) -> dict[str, list[float]]:
    """``target``: a DockerStack or a Topology (both submit over GraphQL and answer ``graphql``)."""
    samples: dict[str, list[float]] = {name: [] for name in [*PHASES, "submit → success (end to end)"]}
    for i in range(runs + 1):
        submitted = time.time()
        run_id = target.client.submit_job_execution(
            "build_job", repository_location_name=PRODUCT.name, repository_name="__repository__",
            run_config=FAST_BUILD)
        status = target.wait_run(run_id, timeout=900)
        if status != "SUCCESS":
            raise RuntimeError(f"run {run_id} {status}")
        if i == 0:
            continue
        times = event_times(target, run_id)
        for name, (start, end) in PHASES.items():
            samples[name].append(times[end] - times[start])
        samples["submit → success (end to end)"].append(times["RunSuccessEvent"] - submitted)
    return samples


def image_sizes() -> dict[str, float]:
    sizes = {}
    for image in ALL_IMAGES:
        size = docker("image", "inspect", "-f", "{{.Size}}", image, check=False)
        if size.isdigit():
            sizes[image] = int(size) / 1e6
    return sizes


def start_stack(logs: Path) -> tuple[DockerStack, float, float]:
    """Up the stack: seconds for ``stack.sh up`` and until it is ready."""
    stack = DockerStack(logs)
    started = time.monotonic()
    stack.up()
    up = time.monotonic() - started
    stack.wait_ready()
    return stack, up, time.monotonic() - started


def measure_stack(runs: int, cold: bool) -> dict:
    """Cold start (optional), then a warm start on the images just built, the launch runs, the stop."""
    root = Path(tempfile.mkdtemp(prefix="bench_docker_stack_"))
    result: dict = {"starts": {}}
    if cold:
        present = [i for i in STACK_IMAGES if docker("image", "inspect", i, check=False)]
        if present:
            docker("rmi", "-f", *present)
        docker("image", "prune", "-f")
        stack, up, ready = start_stack(root / "cold")
        result["starts"]["cold: the stack's images removed first (base image and wheelhouse present)"] = (up, ready)
        stack.down()
    stack, up, ready = start_stack(root / "warm")
    result["starts"]["warm: images and build cache present"] = (up, ready)
    try:
        result["launch"] = time_build_runs(stack, runs)
    finally:
        result["down"] = stack.down()
    result["sizes"] = image_sizes()
    return result


def measure_processes(runs: int) -> dict[str, list[float]]:
    root = Path(tempfile.mkdtemp(prefix="bench_docker_stack_processes_"))
    with fresh_database("mlops_bench") as db:
        topo = Topology(root, production_instance_config(monitoring_poll_seconds=None), [PRODUCT], pg_env(db))
        with running(topo):
            return time_build_runs(topo, runs)


def render(stack: dict, processes: dict[str, list[float]], runs: int, cold: bool) -> str:
    lines = [
        "## The Docker stack: start, run launch in containers, image sizes",
        "",
        f"`python -m benchmarks.bench_docker_stack --runs {runs}{' --cold' if cold else ''}` on {machine()}, "
        "Docker 20.10 (Debian), docker-compose 1.29, images on the local debootstrap base.",
        "",
        "| stack start | `stack.sh up` (s) | … until the location is served and the daemon healthy (s) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {kind} | {up:.0f} | {ready:.0f} |" for kind, (up, ready) in stack["starts"].items()]
    lines += [
        "",
        f"`stack.sh down` (containers, run containers, network, volumes): {stack['down']:.0f} s.",
        "",
        f"Launch latency: {runs} runs of `build_job` (after one warm-up run that builds the model), one after the "
        "other over GraphQL; seconds, median / p90 / max, from the runs' own events. Containers: "
        "DockerRunLauncher starts a new container from `mlops-user-code` for each run. Processes: the same "
        "deploy/dagster.yaml on the local PostgreSQL, the run launched as a process by the code server "
        "(testkit/topology.py).",
        "",
        "| phase | containers (Docker stack) | processes (process topology) | ratio |",
        "|---|---|---|---:|",
    ]
    from statistics import median

    for phase in stack["launch"]:
        ratio = median(stack["launch"][phase]) / max(median(processes[phase]), 1e-9)
        lines.append(f"| {phase} | {summary(stack['launch'][phase])} | {summary(processes[phase])} | {ratio:.2f} |")
    lines += [
        "",
        "In containers the daemon creates and starts a container through the engine (docker.sock) where the "
        "process topology has the code server spawn a process; both then start a run worker that imports "
        "Dagster and the code location. With 5 runs on 2 shared cores the two are within noise of each "
        "other: compare the ratios of repeated runs, not one table.",
        "",
        "| image | size (MB) |",
        "|---|---:|",
    ]
    lines += [f"| `{image}` | {size:.0f} |" for image, size in stack["sizes"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="remove the stack's images first")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    problem = engine_problem()
    if problem:
        print(f"bench_docker_stack: skipped: {problem}", file=sys.stderr)
        return 0
    if any(leftovers().values()):
        print("bench_docker_stack: a stack named mlops exists on this engine; `make deploy-down` first",
              file=sys.stderr)
        return 1
    stack = measure_stack(args.runs, args.cold)
    processes = measure_processes(args.runs)
    section = render(stack, processes, args.runs, args.cold)
    print(section)
    if not args.no_write:
        write_section("bench_docker_stack", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
