"""What an operator reads: refusals as refusals, the gate's outcomes in honest words, figures with their split."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.automation import rollback_job
from mlops_assets.core.registry.registry import ModelRegistry
from mlops_assets.deploy_stage.release import promoted_to_production
from mlops_assets.refs import RegisteredModelRef
from mlops_assets.tools.registry_cli import main as registry_cli
from resources.model_registry import ModelRegistryResource

REPO = Path(__file__).resolve().parents[1]
SIGNATURE = {"class_names": ["cat", "dog"], "spec": {"height": 8, "width": 8, "channels": 1}}


def test_rollback_job_with_nothing_to_roll_back_is_a_refusal_not_a_failed_run(tmp_path):
    resources = {"model_registry": ModelRegistryResource(home=str(tmp_path / "bentoml"))}
    instance = dg.DagsterInstance.ephemeral()
    result = rollback_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)
    assert result.success
    refusals = [e.user_message for e in instance.all_logs(result.run_id) if "nothing to roll back" in e.user_message]
    assert len(refusals) == 1 and "\n" not in refusals[0]
    assert "no previous production version" in refusals[0]
    assert ModelRegistry(tmp_path / "bentoml", "image_classifier").production() is None


@pytest.mark.slow
def test_the_documented_dagster_rollback_command_prints_one_line_and_no_banner(tmp_path):
    """docs/operating.md's `dg launch --job rollback_job` (DAGSTER_HOME named, as its line says) on a fresh project."""
    home = tmp_path / "project"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLOPS_", "BENTOML_"))}
    env.update(
        DAGSTER_HOME=str(home),
        MLOPS_HOME=str(home / ".mlops"),
        HOME=str(tmp_path),
        PYTHONPATH=str(REPO),
        MLOPS_ENV_FILE=os.devnull,
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "launch", "--job", "rollback_job"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 0, output
    assert not any("Telemetry" in line or "virtual environment" in line or "Traceback" in line for line in output)
    assert len(output) == 1 and "nothing to roll back" in output[0], output


def ref(promoted: bool, reason: str, awaiting: bool = False) -> RegisteredModelRef:
    return RegisteredModelRef(
        tag="image_classifier:v2",
        version="v2",
        promoted=promoted,
        reason=reason,
        production_version="v2" if promoted else "v1",
        awaiting_approval=awaiting,
    )


@pytest.mark.parametrize(
    "registered, outcome",
    [
        (
            ref(False, "awaiting approval (the registry's policy requires it): accuracy 0.97 ≥ production", True),
            "awaiting approval",
        ),
        (ref(False, "accuracy 0.4000 is below the floor 0.5500 (baseline-relative)"), "kept as a candidate"),
        (ref(True, "accuracy 0.97 ≥ production 0.96 on the same 300 images"), "promoted"),
    ],
)
def test_awaiting_approval_and_below_the_floor_are_outcomes_of_the_gate_not_failures(registered, outcome):
    result = promoted_to_production(registered)
    assert result.passed
    assert result.metadata["outcome"].value == outcome
    from mlops_assets.tools.demo import check_line

    line = check_line("promoted_to_production", result.passed, result.metadata)
    assert "FAILED" not in line and outcome in line and registered.reason in line


def test_a_gate_that_could_not_judge_is_a_warning():
    stale = ref(
        False, "production changed to v3 after evaluation_report compared with v1: re-materialise evaluation_report"
    )
    result = promoted_to_production(stale)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["outcome"].value == "not judged"


def test_registry_list_says_on_which_split_each_figure_was_measured_beside_the_gate_comparison(tmp_path, capsys):
    registry = ModelRegistry(tmp_path / "bentoml", "clf")
    figures = [(0.9888, None), (0.9851, ("v0", 0.9900, 0.9700, 310)), (0.9746, ("v1", 0.9800, 0.9500, 298))]
    for i, (accuracy, gate) in enumerate(figures):
        onnx = tmp_path / f"m{i}.onnx"
        onnx.write_bytes(f"model {i}".encode())
        metadata = {"metrics": {"accuracy": accuracy, "n": 360}, **SIGNATURE}
        if gate:
            metadata["gate"] = {
                "metric": "accuracy",
                "compared_with": gate[0],
                "candidate": gate[1],
                "production": gate[2],
                "rows": gate[3],
            }
        registry.register(onnx, f"v{i}", {"splits_version": f"split{i}abcdef"}, metadata)
    assert registry_cli(["--home", str(tmp_path / "bentoml"), "--model", "clf", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "accuracy=0.9746 on its own test split split2ab (360 images)" in lines["v2"]
    assert "gate: 0.9800 vs v1 0.9500 on the same 298 images" in lines["v2"]
    assert "on its own test split split0ab" in lines["v0"] and "gate:" not in lines["v0"]
