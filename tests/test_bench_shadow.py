"""The shadow benchmark: its report from given figures, and its smoke mode as CI runs it (a real build, the real
server with its shadow slot set and cleared, tiny durations). No time is asserted."""

from __future__ import annotations

import pytest

from benchmarks import bench_shadow as bench
from testkit.bench_smoke import smoke_report


def level(rps: float, p50: float, p99: float, mirrored: float | None = None, non_2xx: int = 0) -> dict:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": non_2xx, "socket_errors": 0, "mirrored": mirrored}


def timed(p50: float, p99: float, mirrored: float | None = None, failed: int = 0) -> dict:
    """A c=1 level as the keep-alive client times it (bench_serving.lone_request_timeline)."""
    return {"requests": 400, "failed": failed, "p50_ms": p50, "p99_ms": p99, "mirrored": mirrored}


def test_the_report_compares_the_server_with_and_without_a_shadow_against_the_goals():
    off = bench.ModeRun("no shadow", [timed(1.0, 2.0), timed(1.1, 2.4)], [level(3000, 20, 40)])
    on = bench.ModeRun("shadow", [timed(1.2, 3.0, 1.0), timed(1.3, 3.6, 0.98, failed=1)],
                       [level(2500, 25, 60, 0.7, non_2xx=1)])
    text = bench.render({"no shadow": off, "shadow": on}, 2, 8.0, 2, (1.0, 0.5, 0.25), 90.0)
    assert text.startswith("## Shadow serving (`bench_shadow`)")
    rows = {row[0].strip(): [cell.strip() for cell in row[1:]] for row in
            (line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "shadow |" in line)}
    assert rows["no shadow"] == ["1.05", "2.20", "—", "3000", "40.0", "—", "0"]
    assert rows["shadow"] == ["1.25", "3.30", "0.990", "2500", "60.0", "0.700", "2"]
    assert "adds +1.10 ms to the c=1 p99 (meets the goal ≤ 2 ms)" in text
    assert "99.0 % of c=1 requests mirrored (meets the goal ≥ 99 %)" in text
    assert "c=64 throughput 0.83× (misses the goal ≥ 0.9×), 70.0 % of its requests mirrored" in text


@pytest.mark.slow
def test_the_shadow_benchmark_runs_in_smoke_mode_and_writes_a_well_formed_report(tmp_path):
    text = smoke_report("benchmarks.bench_shadow", tmp_path / "shadow.md", timeout_s=900)
    assert text.startswith("## Shadow serving (`bench_shadow`)")
    (row,) = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| shadow |")]
    p50, p99, mirrored, rps = (float(cell) for cell in row[1:5])
    assert 0 < p50 <= p99 and rps > 0 and 0.9 <= mirrored <= 1.0, row
    assert row[7].strip() == "0", f"failed requests in {row}"
