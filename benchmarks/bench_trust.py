"""Decisions the loop can trust: what they cost (issue: decisions the loop can trust).

1. A second build on unchanged inputs (what a second `make demo` does): trained_model's step time against
   the first build's, and the whole job's. Goal: trained_model ≤ 0.05× (the model is reused, not trained).
2. The retraining policy's check on every drift-sensor tick: the labelled folder's fingerprint (one stat per
   file) on a 200k-file folder, against listing the same folder without stat-ing (the floor of any check
   that notices added or removed files).
3. Drift onset → new model served, with one-minute windows: the loop scenario of the tests
   (``testkit/loop_scenario.py``), each phase's seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.report import median, write_section

ROOT = Path(__file__).resolve().parents[1]
N_FILES = 200_000


def step_seconds(instance, run_id: str) -> dict[str, float]:
    return {s.step_key: (s.end_time or 0) - (s.start_time or 0) for s in instance.get_run_step_stats(run_id)}


def second_build() -> dict[str, float]:
    """build_job twice on digits in one home, as `make demo` twice does."""
    import dagster as dg

    from mlops_assets.definitions import ASSET_CHECKS, ASSETS
    from testkit.fixtures import make_resources

    with tempfile.TemporaryDirectory() as home, dg.instance_for_test() as instance:
        defs = dg.Definitions(assets=ASSETS, asset_checks=ASSET_CHECKS,
                              jobs=[dg.define_asset_job("build", selection=dg.AssetSelection.groups("build"),
                                                        executor_def=dg.in_process_executor)],
                              resources=make_resources(Path(home)))
        job = defs.resolve_job_def("build")
        figures = {}
        for attempt in ("first", "second"):
            start = time.perf_counter()
            result = job.execute_in_process(instance=instance)
            figures[f"{attempt}_wall"] = time.perf_counter() - start
            assert result.success, f"{attempt} build failed"
            steps = step_seconds(instance, result.run_id)
            figures[f"{attempt}_train"] = next(v for k, v in steps.items() if "trained_model" in k)
    return figures


def fingerprint_cost() -> dict[str, float]:
    from mlops_assets.core.data.images import folder_fingerprint

    with tempfile.TemporaryDirectory() as folder:
        for c in range(4):
            (Path(folder) / f"class{c}").mkdir()
        for i in range(N_FILES):
            (Path(folder) / f"class{i % 4}" / f"{i:06d}.png").touch()

        def listing() -> int:
            return sum(len(os.listdir(Path(folder) / d)) for d in os.listdir(folder))

        timings = {"listing": [], "fingerprint": []}
        for _ in range(5):
            for name, call in (("listing", listing), ("fingerprint", lambda: folder_fingerprint(folder))):
                start = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - start)
    return {name: median(values) for name, values in timings.items()}


def loop_phases() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M")
        env = {**os.environ, "MLOPS_PROFILE_CRON": "* * * * *", "MLOPS_MONITOR_START": start,
               "MLOPS_HOME": home, "PYTHONPATH": str(ROOT)}
        process = subprocess.run([sys.executable, "-m", "testkit.loop_scenario", home], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=900)
        lines = [line for line in process.stdout.splitlines() if line.startswith("LOOP_SUMMARY ")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"loop scenario failed:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}")
        summary = json.loads(lines[-1].removeprefix("LOOP_SUMMARY "))
    assert summary["promoted"], summary["gate_reason"]
    return summary["phases_s"]


def main() -> None:
    build = second_build()
    fingerprint = fingerprint_cost()
    phases = loop_phases()
    train_ratio = build["second_train"] / build["first_train"]
    body = "\n".join([
        "## Decisions the loop can trust: their cost",
        "",
        "A second build on unchanged inputs (`make demo` twice: same split, training config and training code):",
        "",
        "| | first build | second build | ratio |",
        "|---|---:|---:|---:|",
        f"| trained_model step | {build['first_train']:.2f} s | {build['second_train']:.3f} s | "
        f"{train_ratio:.3f} (goal ≤ 0.05) |",
        f"| whole build_job | {build['first_wall']:.1f} s | {build['second_wall']:.1f} s | "
        f"{build['second_wall'] / build['first_wall']:.2f} |",
        "",
        f"The retraining policy's check on each drift-sensor tick, a folder of {N_FILES:,} image files "
        "(median of 5):",
        "",
        "| what | time | ratio |",
        "|---|---:|---:|",
        f"| listing the folder (baseline: no stat) | {fingerprint['listing']:.3f} s | 1.00 |",
        f"| `folder_fingerprint` (names, sizes, mtimes) | {fingerprint['fingerprint']:.3f} s | "
        f"{fingerprint['fingerprint'] / fingerprint['listing']:.2f} |",
        "",
        "Drift onset → new model served, one-minute windows (`testkit/loop_scenario.py`; the sensor is ticked "
        "as soon as a window is profiled, where the daemon would tick within `minimum_interval_seconds`=60):",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *[f"| {name.replace('_', ' ')} | {seconds:.1f} |" for name, seconds in phases.items()],
    ])
    write_section("bench_trust", body)
    print(body)


if __name__ == "__main__":
    main()
