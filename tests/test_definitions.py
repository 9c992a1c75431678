"""The code location loads, validates, resolves every job, and imports nothing heavy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
# What a run, a sensor tick or a code-server start would pay for at load and only some steps use: the ML
# libraries, numpy (the pure core imports it inside its functions), and the Docker run launcher's client (the
# Dagster instance loads the launcher, in the processes that launch runs; the code location never does).
HEAVY = ["torch", "great_expectations", "whylogs", "bentoml", "onnxruntime", "onnx", "sklearn", "matplotlib",
         "numpy", "pandas", "pyarrow", "PIL", "docker", "dagster_docker"]


def test_definitions_import_no_heavy_library():
    code = (
        "import json, sys; import mlops_assets.definitions; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


SPAWN_PROBE = """
import json, sys, sysconfig, traceback
stdlib, started = sysconfig.get_paths()["stdlib"], []

def spawned_by_the_project(event, args):
    if event not in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec"):
        return
    # the nearest caller outside the standard library decides who started it: the project, or a library
    for frame in reversed(traceback.extract_stack()[:-1]):
        if not frame.filename.startswith((stdlib, "<")):
            if frame.filename.startswith(sys.argv[1]) and "site-packages" not in frame.filename:
                started.append(f"{frame.filename}:{frame.lineno} {args[0]}")
            return

sys.addaudithook(spawned_by_the_project)
import mlops_assets.definitions
print(json.dumps(started))
"""


def test_definitions_start_no_process_at_load():
    """Loading is imports and declarations only: a child process the project starts at load (ctypes' library
    search runs ``ldconfig``, for one) is paid again by every run, sensor tick and code-server start."""
    out = subprocess.run([sys.executable, "-c", SPAWN_PROBE, str(ROOT)], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_monitoring_sensors_run_by_default_at_the_one_configured_cadence():
    code = (
        "import json; from mlops_assets.definitions import defs; "
        "print(json.dumps({s.name: [s.minimum_interval_seconds, s.default_status.value] "
        "for s in defs.get_repository_def().sensor_defs}))"
    )
    env = {**os.environ, "MLOPS_SENSOR_INTERVAL_S": "7", "MLOPS_ENV_FILE": os.devnull}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    sensors = json.loads(out.stdout.strip().splitlines()[-1])
    monitoring = ("inference_profiling_sensor", "drift_sensor", "feedback_sensor", "performance_alert_sensor")
    assert {name: sensors[name] for name in monitoring} == {name: [7, "RUNNING"] for name in monitoring}


def test_definitions_validate_and_jobs_resolve():
    from mlops_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("build_job")
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_images", "data_splits", "trained_model", "onnx_model", "evaluation_report",
            "registered_model"} <= keys
    assert job.executor_def.name == "in_process"
    assert defs.resolve_schedule_def("weekly_rebuild").default_status == dg.DefaultScheduleStatus.STOPPED


def test_every_job_runs_in_process_from_the_one_executor_the_definitions_set():
    """No job names an executor (automation.py): the Definitions' in-process executor applies to each, the
    implicit asset job and the jobs sensors launch included."""
    from mlops_assets.definitions import defs

    jobs = defs.get_repository_def().get_all_jobs()
    assert {"build_job", "retrain_job", "deploy_job", "reference_profile_job"} <= {job.name for job in jobs}
    assert {job.name: job.executor_def.name for job in jobs} == {job.name: "in_process" for job in jobs}
    assert "executor_def" not in (ROOT / "mlops_assets" / "automation.py").read_text()


def test_build_job_has_the_fifteen_steps_its_docs_count():
    """automation.py (why the executor is in-process) and deploy/README.md (why not one container per step)
    count build_job's steps: nine assets (the registered version's reference profile, its Bento and the release
    after the Bento's application test included) and six check steps."""
    from mlops_assets.definitions import defs

    steps = defs.resolve_job_def("build_job").graph.nodes
    assert len(steps) == 15, f"build_job has {len(steps)} steps; update automation.py and deploy/README.md"
    for path in (ROOT / "mlops_assets" / "automation.py", ROOT / "deploy" / "README.md"):
        assert "fifteen" in path.read_text(), path


def test_every_asset_is_described_grouped_and_owned():
    from mlops_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} has no description"
        assert node.group_name in ("build", "deploy", "monitor"), f"{key} group {node.group_name}"
        assert node.owners, f"{key} has no owner"
        assert node.code_version, f"{key} has no code version"
        assert node.kinds, f"{key} has no kinds"
    kinds = set().union(*(graph.get(key).kinds for key in graph.get_all_asset_keys()))
    assert {"pytorch", "onnx", "bentoml", "whylogs", "great_expectations"} <= kinds


def test_build_gates_are_blocking_checks():
    from mlops_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    blocking = {key.name for key in graph.asset_check_keys if graph.get(key).blocking}
    assert "onnx_matches_torch" in blocking
    assert {"no_leakage", "class_coverage"} <= blocking


def test_dagster_yaml_is_a_valid_instance(tmp_path, monkeypatch):
    """The repo's dagster.yaml loads as an instance (the queued coordinator, the daemon scheduler)."""
    import shutil

    monkeypatch.chdir(tmp_path)  # its storage paths are relative to the working directory
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.scheduler).__name__ == "DagsterDaemonScheduler"
