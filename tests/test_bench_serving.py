"""The pure parts of the serving benchmark: reading wrk's output, choosing a setting, the report, and the
hand-rolled endpoint's validation. No servers, no load, no wall-clock assertions."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_serving as bench
from testkit.bench_smoke import smoke_report

WRK_WITH_ERRORS = """\
Running 8s test @ http://127.0.0.1:40123/classify
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    74.31ms   40.12ms   1.02s    91.00%
    Req/Sec   621.50    100.20   800.00     70.00%
  Latency Distribution
     50%   74.70ms
     75%   90.00ms
     90%  120.00ms
     99%    1.20s
  4970 requests in 8.01s, 2.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 154
Requests/sec:    620.52
Transfer/sec:    268.00KB
"""

WRK_CLEAN = """\
Running 1s test @ http://127.0.0.1:40123/classify
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.00us  100.00us   5.40ms   95.00%
    Req/Sec     2.50k   100.00     2.60k    80.00%
  Latency Distribution
     50%  380.00us
     75%  420.00us
     90%  500.00us
     99%    5.40ms
  2496 requests in 1.00s, 1.00MB read
Requests/sec:   2496.00
Transfer/sec:      1.00MB
"""


def test_parse_wrk_output_reads_latencies_errors_and_throughput():
    result = bench.parse_wrk_output(WRK_WITH_ERRORS)
    assert result["rps"] == pytest.approx(620.52)
    assert result["requests"] == 4970
    assert result["duration_s"] == pytest.approx(8.01)
    assert result["p50_ms"] == pytest.approx(74.7)
    assert result["p99_ms"] == pytest.approx(1200.0)
    assert result["non_2xx"] == 154
    assert result["socket_errors"] == 5


def test_parse_wrk_output_without_errors_and_in_microseconds():
    result = bench.parse_wrk_output(WRK_CLEAN)
    assert result["p50_ms"] == pytest.approx(0.38)
    assert result["p99_ms"] == pytest.approx(5.4)
    assert result["non_2xx"] == 0 and result["socket_errors"] == 0


def test_parse_wrk_output_refuses_output_without_latency_distribution():
    without = "\n".join(line for line in WRK_CLEAN.splitlines() if "%" not in line)
    with pytest.raises(ValueError, match="--latency"):
        bench.parse_wrk_output(without)


@pytest.mark.parametrize("text, ms", [("812.00us", 0.812), ("1.25ms", 1.25), ("2.01s", 2010.0), ("1.00m", 60000.0)])
def test_parse_duration_ms(text, ms):
    assert bench.parse_duration_ms(text) == pytest.approx(ms)


def test_parse_duration_ms_rejects_garbage():
    with pytest.raises(ValueError):
        bench.parse_duration_ms("fast")


def test_missing_wrk_says_how_to_install_and_fails(monkeypatch, capsys):
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as exit_info:
        bench.require_wrk()
    assert exit_info.value.code != 0
    assert "apt-get install -y wrk" in capsys.readouterr().err


def _level(rps: float, p50: float, p99: float, non_2xx: int = 0, cpu_ms: float = 1.0) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": non_2xx, "socket_errors": 0,
            "requests": int(rps), "duration_s": 1.0, "cpu_ms_per_request": cpu_ms, "cores": rps * cpu_ms / 1000}


def _run(server: str, setting: str, c64_rps: float, non_2xx: int = 0, recovery_p50: float = 1.0,
         cpu_ms: float = 1.0) -> bench.ServerRun:
    run = bench.ServerRun(server, setting)
    run.levels = {1: _level(500, 1.0, 2.0, cpu_ms=cpu_ms), 8: _level(800, 8.0, 20.0, cpu_ms=cpu_ms),
                  64: _level(c64_rps, 40.0, 45.0, non_2xx, cpu_ms=cpu_ms)}
    run.recovery = [_level(400, recovery_p50, recovery_p50)] * 4
    return run


def test_recommend_refuses_settings_with_non_2xx_and_prefers_recovery():
    runs = [
        _run("hand-rolled", "-", 1000),
        _run("bentoml", "latency20", 5000, non_2xx=3),  # fastest, but dropped requests
        _run("bentoml", "default", 1500, recovery_p50=60.0),  # stuck slow after the burst
        _run("bentoml", "batch64", 1200),
    ]
    assert not runs[2].recovered() and runs[3].recovered()
    assert bench.recommend(runs).setting == "batch64"
    assert bench.recommend(runs[:2]) is None
    assert bench.recommend([*runs, _run("bentoml", "nolog", 9000)]).setting == "batch64"  # a feature off


def test_hand_reference_averages_the_first_and_last_hand_rolled_runs():
    runs = [_run("hand-rolled", "first", 1000), _run("bentoml", "default", 500), _run("hand-rolled", "last", 2000)]
    assert bench.hand_reference(runs)[64] == 1500


def test_render_has_the_tables_ratios_and_an_honest_conclusion():
    runs = [_run("hand-rolled", "first", 1000, cpu_ms=0.3), _run("floor", "default", 700, cpu_ms=0.8),
            _run("bentoml", "default", 500, cpu_ms=1.0), _run("bentoml", "latency20", 900, 7)]
    ceiling = {"single_ips": 10000.0, "single_p50_ms": 0.1, "single_p99_ms": 0.2, "batched_ips": 40000.0, "batch": 64}
    text = bench.render(runs, ceiling, duration_s=8, recovery_s=4, wall_s=100)
    assert "| our service `default` | c=64 | default | 500 |" in text
    assert "| 1.00 | 0.50 | 1.25 | 0 / 0 | 0.50 | 0.050 |" in text  # CPU ms/req, cores, × floor, errors, ratios
    assert "`default` CPU per request vs the floor at the same setting (goal ≤ 1.1×): c=1 1.25×" in text
    assert "`latency20` (7 failed requests)" in text
    assert "misses the throughput goal by 50%" in text and "**not met**" in text


def test_handrolled_validation_matches_the_service_essentials():
    pytest.importorskip("fastapi")
    from benchmarks.handrolled_server import check_images

    shape = (1, 8, 8)
    assert check_images(np.zeros((2, 8, 8)).tolist(), shape, 4).shape == (2, 1, 8, 8)
    assert check_images(np.zeros((1, 1, 8, 8)).tolist(), shape, 4).dtype == np.float32
    bad_inputs = [([], "empty"), ([[1, 2], [3]], "rectangular|shape"), (np.zeros((1, 3, 8, 8)).tolist(), "shape"),
                  (np.zeros((5, 8, 8)).tolist(), "at most 4"), ([[["a"] * 8] * 8], "numbers"),
                  ([[[float("nan")] * 8] * 8], "NaN")]
    for bad, message in bad_inputs:
        with pytest.raises(ValueError, match=message):
            check_images(bad, shape, 4)


@pytest.mark.slow
def test_the_serving_benchmark_runs_in_smoke_mode_and_writes_a_well_formed_report(tmp_path):
    """`make bench`'s serving benchmark, with tiny durations: it runs every server (hand-rolled peer, BentoML
    floor, our service), and its report has every row with numbers. No time is asserted."""
    text = smoke_report("benchmarks.bench_serving", tmp_path / "serving.md", timeout_s=600)
    assert text.startswith("## Serving")
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and " c=" in line]
    servers = {row[0].strip().split(" `")[0] for row in rows}
    assert servers == {"FastAPI/uvicorn hand-rolled (first)", "BentoML floor (trivial service)", "our service"}
    for row in rows:
        rps, p50, p99, cpu, cores = (float(cell) for cell in row[3:8])
        assert rps > 0 and 0 < p50 <= p99 and cpu > 0 and cores > 0, row
        assert row[9].strip() == "0 / 0", f"failed requests in {row}"
    assert "**Against the floor.**" in text
