"""Build pipeline benchmark: orchestration overhead.

build_job's wall time vs the sum of its steps' own compute time, with the in-process executor the job uses, and
with Dagster's default multiprocess executor for comparison. Goal: ≤ 1.3 in-process. (The code location's load
time, which every run pays too, is benchmarks/bench_load.py.)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.report import write_section


def _job_for(executor: str):
    """build_job's selection with the given executor, on resources under $BENCH_BUILD_HOME."""
    import os

    import dagster as dg

    from mlops_assets.definitions import ASSET_CHECKS, ASSETS
    from testkit.fixtures import make_resources

    executor_def = dg.in_process_executor if executor == "in_process" else dg.multiprocess_executor
    job = dg.define_asset_job("bench_build", selection=dg.AssetSelection.groups("build"), executor_def=executor_def)
    defs = dg.Definitions(assets=ASSETS, asset_checks=ASSET_CHECKS, jobs=[job],
                          resources=make_resources(Path(os.environ["BENCH_BUILD_HOME"])))
    return defs.resolve_job_def("bench_build")


def _multiprocess_job():
    """Module-level, so the multiprocess executor can rebuild the job in each child process."""
    return _job_for("multiprocess")


def run_build(executor: str) -> dict[str, float]:
    """Run build_job on digits in a fresh temporary home; return wall time and summed step time."""
    import os

    import dagster as dg

    with tempfile.TemporaryDirectory() as home, dg.instance_for_test() as instance:
        os.environ["BENCH_BUILD_HOME"] = home
        start = time.perf_counter()
        if executor == "in_process":
            result = _job_for("in_process").execute_in_process(instance=instance)
            success, run_id = result.success, result.run_id
        else:
            with dg.execute_job(dg.reconstructable(_multiprocess_job), instance=instance) as result:
                success, run_id = result.success, result.run_id
        wall = time.perf_counter() - start
        assert success, f"build_job failed with the {executor} executor"
        steps = instance.get_run_step_stats(run_id)
        compute = sum((s.end_time or 0) - (s.start_time or 0) for s in steps)
    return {"wall": wall, "steps": compute, "n_steps": len(steps)}


def main() -> None:
    in_process = run_build("in_process")
    multi = run_build("multiprocess")
    build_rows = [
        f"| in-process (build_job's executor) | {in_process['n_steps']} | {in_process['steps']:.1f} s | "
        f"{in_process['wall']:.1f} s | {in_process['wall'] / in_process['steps']:.2f} (goal ≤ 1.3) |",
        f"| multiprocess (Dagster's default) | {multi['n_steps']} | {multi['steps']:.1f} s | "
        f"{multi['wall']:.1f} s | {multi['wall'] / multi['steps']:.2f} |",
    ]
    body = "\n".join([
        "## Build pipeline",
        "",
        "build_job end to end on digits (every asset and check step), wall time vs the sum of the steps' own time:",
        "",
        "| executor | steps | sum of steps | wall | overhead ratio |",
        "|---|---:|---:|---:|---:|",
        *build_rows,
        "",
        "The in-process executor is why build_job sets `executor_def=in_process_executor`: the multiprocess "
        "executor starts a Python process per step, which costs seconds of CPU per step on this 2-core machine.",
    ])
    write_section("bench_build", body)
    print(body)


if __name__ == "__main__":
    main()
