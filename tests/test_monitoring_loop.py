"""The loop closes: clean traffic → no retrain; drifted traffic → drift → retraining → served.

The scenario (testkit/loop_scenario.py) runs in its own interpreter because the profile cadence is
read when the definitions are imported: one-minute windows keep this test to a few minutes.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_drift_closes_the_loop(tmp_path):
    start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M")
    env = {**os.environ, "MLOPS_PROFILE_CRON": "* * * * *", "MLOPS_MONITOR_START": start,
           "MLOPS_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-m", "testkit.loop_scenario", str(tmp_path)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
    lines = [line for line in process.stdout.splitlines() if line.startswith("LOOP_SUMMARY ")]
    assert process.returncode == 0 and lines, process.stdout[-3000:] + process.stderr[-5000:]
    summary = json.loads(lines[-1].removeprefix("LOOP_SUMMARY "))

    clean, drifted, labelled, again = summary["ticks"]
    assert clean["run_keys"] == [] and "drift share" in clean["skip"]
    assert drifted["run_keys"] == [] and "no new labelled data" in drifted["skip"]
    assert summary["alerts"] == ["drift_without_new_data"]
    assert len(labelled["run_keys"]) == 1 and labelled["run_keys"][0].startswith("drift-")
    assert again["run_keys"] == [] and again["skip"]
    assert summary["log"]["dropped"] == 0
    assert summary["run_tags"]["mlops/trigger"] == "drift"
    assert summary["retrain_success"]
    # the retrained model is better on the drifted data: promoted, and the running service serves it
    assert summary["promoted"], summary["gate_reason"]
    assert "on the same" in summary["gate_reason"]
    assert summary["production_after"] != summary["first_production"]
    assert summary["served_after"] == summary["production_after"]
