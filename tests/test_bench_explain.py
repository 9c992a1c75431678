"""The explanation benchmark: its report from given figures, and its smoke mode as CI runs it (a real build, a
real server, tiny durations). No time is asserted."""

from __future__ import annotations

import pytest

from benchmarks import bench_explain as bench
from testkit.bench_smoke import smoke_report


def level(rps: float, non_2xx: int = 0) -> dict[str, float]:
    return {"rps": rps, "non_2xx": non_2xx, "socket_errors": 0}


def test_the_report_compares_classify_alone_and_with_explanations_against_the_goals():
    small = bench.SizeRun("8×8", (1, 8, 8), "abc", "deletion test: ... (5.00×)", [10.0, 12.0, 30.0],
                          [level(1000), level(1200)], [level(900), level(1000)], [40.0, 60.0])
    big = bench.SizeRun("32×32", (1, 32, 32), "def", "deletion test: ... (3.00×)", [100.0] * 19 + [400.0],
                        [level(800)], [level(560, non_2xx=2)], [300.0], failed=1)
    text = bench.render([small, big], 8.0, 2, (1.0, 0.5, 0.25), 120.0)
    assert text.startswith("## Explanations (`/explain`)")
    rows = {row[0].strip(): [cell.strip() for cell in row[1:]] for row in
            (line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 1×"))}
    assert rows["1×8×8 (`abc`)"][:7] == ["12.0", "28.2", "3", "1100", "950", "0.86", "2, 50 / 59"]
    assert rows["1×32×32 (`def`)"][5:8] == ["0.70", "1, 300 / 300", "1 / 2"]
    assert "p95 at 32×32 115 ms (meets the goal ≤ 250 ms)" in text  # one slow request in 20 is not the p95
    assert "keeps 0.86× its c=64 throughput at 8×8 (meets" in text
    assert "0.70× its c=64 throughput at 32×32 (misses" in text
    assert "Load average before the run: 1.00, 0.50, 0.25" in text


@pytest.mark.slow
def test_the_explain_benchmark_runs_in_smoke_mode_and_writes_a_well_formed_report(tmp_path):
    text = smoke_report("benchmarks.bench_explain", tmp_path / "explain.md", timeout_s=900)
    assert text.startswith("## Explanations (`/explain`)")
    (row,) = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 1×8×8")]
    p50, p95, n, alone, loaded, ratio = (float(cell) for cell in row[1:7])
    assert 0 < p50 <= p95 and n >= 1 and alone > 0 and loaded > 0 and ratio > 0, row
    assert row[8].strip() == "0 / 0", f"failed requests in {row}"
    assert "the version's explanation check: deletion test" in text
