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
    # the harm trigger (the default, docs/drift-decision.md) decided: the accuracy estimated without labels fell
    # at least 5 points below validation; the pixel drift share is shown as context
    assert summary["run_tags"]["mlops/retrain_signal"] == "harm"
    assert "→ retrain (harm trigger)" in drifted["skip"] and "(ATC)" in drifted["skip"]
    assert "pixel drift share" in drifted["skip"] and "→ no retrain (harm trigger)" in clean["skip"]
    assert summary["retrain_success"]
    # the retrained model is better on the drifted data: promoted, and the running service serves it
    assert summary["promoted"], summary["gate_reason"]
    assert "on the same" in summary["gate_reason"]
    assert summary["production_after"] != summary["first_production"]
    assert summary["served_after"] == summary["production_after"]
    # every prediction was labelled through the service's /feedback (with its token); the first model's accuracy
    # on the labelled blurred traffic is measured per window, and a person is alerted about it once
    assert [f["accepted"] for f in summary["feedback"]] == [300, 300]
    assert not any(f["refused"] for f in summary["feedback"])
    performance = summary["performance"]
    drift_window = summary["drift_window"]
    clean_window = next(key for key in performance if key != drift_window)
    assert performance[clean_window]["labelled"] == performance[drift_window]["labelled"] == 300
    assert performance[drift_window]["model_version"] == summary["first_production"]
    assert performance[drift_window]["accuracy"] < 0.9 <= performance[clean_window]["accuracy"]
    assert "accuracy" in performance[drift_window]["breaches"]
    alerted = [a for a in summary["performance_alerts"] if a[:2] == ["accuracy", drift_window]]
    assert alerted == [["accuracy", drift_window, summary["first_production"]]]
