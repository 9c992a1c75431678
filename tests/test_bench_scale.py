"""The scale benchmark's smoke mode, as CI runs it: real builds at a tiny size, a well-formed report, no times
asserted and BENCHMARKS.md untouched."""

import json
import math

import pytest

from benchmarks import bench_scale
from benchmarks.report import BENCHMARKS_MD

pytestmark = pytest.mark.slow


def test_smoke_run_reports_every_size_and_step(tmp_path):
    before = BENCHMARKS_MD.read_text()
    results = bench_scale.main(["--smoke", "--workdir", str(tmp_path), "--json", str(tmp_path / "scale.json")])
    assert BENCHMARKS_MD.read_text() == before
    assert json.loads((tmp_path / "scale.json").read_text())["unit"] == bench_scale.SMOKE_UNIT
    sizes = [run["n_images"] for run in results["runs"]]
    assert sizes == [bench_scale.SMOKE_TINY, *(bench_scale.SMOKE_UNIT * f for f in bench_scale.SMOKE_FACTORS)]
    for run in results["runs"]:
        assert set(run["steps"]) == set(bench_scale.STEPS)
        assert all(s["seconds"] >= 0 and s["cpu_seconds"] >= 0 and s["peak_rss"] > 0 for s in run["steps"].values())
        assert run["cpu_seconds"] > 0 and run["load_average"] >= 0
        assert run["peak_rss"] > 0 and run["bound"] == bench_scale.memory_bound(run["n_images"])
    for run in results["runs"][1:]:
        assert math.isfinite(run["per_image_us"]) and set(run["per_image_us_steps"]) == set(bench_scale.STEPS)
        assert math.isfinite(run["per_image_cpu_us"]) and set(run["per_image_cpu_us_steps"]) == set(bench_scale.STEPS)
    decoded = bench_scale.SMOKE_UNIT * bench_scale.SMOKE_FACTORS[1]  # the 4× folder, or the largest below 4×
    assert {w: d["images"] for w, d in results["decode"].items()} == {"1": decoded, "2": decoded}
    assert all(d["cpu_seconds"] > 0 for d in results["decode"].values())
    report = results["markdown"]
    assert report.startswith("## Scale") and "| images | uint8 pixels | wall |" in report
    for step in bench_scale.STEPS:
        assert report.count(f"| {step} |") == 3  # seconds, peak RSS and per-image tables
    assert "2 processes" in report and not list(tmp_path.iterdir())[1:]  # only scale.json is left behind
