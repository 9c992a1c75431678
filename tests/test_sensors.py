"""The drift sensor's cursor logic and the run-failure alert, on a real (ephemeral) Dagster instance."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from mlops_assets.ml.drift import profile_frame
from mlops_assets.ml.features import image_features, with_predictions
from mlops_assets.monitoring import publish_profile, reference_version, window_version
from mlops_assets.simulator import apply_drift
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource
from sensors.alerts import record_alert, run_failure_alert
from sensors.drift_sensor import DriftCursor, drift_sensor

MODEL = "v1"
T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def digits():
    from mlops_assets.ml.images import load_digits_dataset

    dataset = load_digits_dataset()
    order = np.random.default_rng(0).permutation(len(dataset.labels))
    return dataset, order[:1257], order[1257:]


def frame(dataset, idx, drift="none", seed=0):
    images, labels = apply_drift(dataset.images[idx], dataset.labels[idx], drift, seed=seed)
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.85, 1.0, len(labels)) if drift == "none" else rng.uniform(0.3, 0.9, len(labels))
    return with_predictions(image_features(images), [str(v) for v in labels], confidence)


@pytest.fixture
def world(tmp_path, digits):
    """An artifact store with a production pointer, its reference profile, and a way to add windows."""
    dataset, train, held_out = digits
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    registry = ModelRegistryResource(home=str(tmp_path / "bentoml"))
    pointer = registry.registry().pointer_path
    pointer.parent.mkdir(parents=True)
    pointer.write_text(json.dumps({"current": MODEL, "history": [], "events": []}))
    publish_profile(store, reference_version(MODEL), profile_frame(frame(dataset, train)), {"n_rows": len(train)})

    def add_window(hour: int, drift: str = "none", n: int = 300) -> str:
        idx = np.resize(held_out, n)
        rows = frame(dataset, idx, drift, seed=hour)
        start = T0 + timedelta(hours=hour)
        version = window_version(start)
        publish_profile(store, version, profile_frame(rows), {"n_rows": n, "start": start.isoformat()})
        return version

    resources = {"artifact_store": store, "model_registry": registry}
    return store, registry, add_window, resources


def tick(resources, instance, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return drift_sensor(context)


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests, result.run_requests
    return result.skip_reason.skip_message


def test_clean_window_is_a_skip_with_a_readable_reason_and_advances_the_cursor(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        result = tick(resources, instance)
    assert skip_text(result).startswith("drift share 0.00 < 0.30 on window 2026-11-22T10")
    assert DriftCursor.parse(result.cursor).window == "window-20261122T1000"


def test_one_drift_event_gives_exactly_one_run_request(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "brightness")
        first = tick(resources, instance, cursor)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        assert request.run_key == f"drift-20261122T1100-{reference_version(MODEL)}"
        assert request.tags["mlops/kind"] == "training" and request.tags["mlops/drift_window"] == "2026-11-22T11"
        # the same tick evaluated again (a retry, or a daemon restarted before the cursor was stored)
        # requests the same run key, which Dagster launches once
        again = tick(resources, instance, cursor)
        assert [r.run_key for r in again.run_requests] == [request.run_key]
        # with the new cursor: nothing new, nothing requested
        after = tick(resources, instance, first.cursor)
        assert skip_text(after) == "no new profile window since 2026-11-22T11"
        assert after.cursor is None  # unchanged


def test_windows_written_while_the_daemon_was_down_are_all_judged(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "invert")
        add_window(2)
        add_window(3)
        result = tick(resources, instance, cursor)
    assert [r.run_key for r in result.run_requests] == [f"drift-20261122T1100-{reference_version(MODEL)}"]
    assert DriftCursor.parse(result.cursor).window == "window-20261122T1300"


def test_no_run_while_a_retraining_run_is_in_flight(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "noise")
        run = instance.add_run(
            dg.DagsterRun(job_name="retrain_job", run_id="f" * 32, status=dg.DagsterRunStatus.STARTED,
                          tags={"mlops/kind": "training"})
        )
        blocked = tick(resources, instance, cursor)
        assert skip_text(blocked).startswith("retraining run ffffffff is started; 1 new window(s) from 2026-11-22T11")
        assert blocked.cursor is None  # not advanced: the window is judged after the run
        instance.report_run_canceled(run)
        resumed = tick(resources, instance, cursor)
    assert len(resumed.run_requests) == 1


def test_cooldown_after_a_drift_run_then_disabled(world, monkeypatch):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        instance.add_run(
            dg.DagsterRun(job_name="retrain_job", run_id="e" * 32, status=dg.DagsterRunStatus.SUCCESS,
                          tags={"mlops/kind": "training", "mlops/trigger": "drift"})
        )
        add_window(1, "rotation")
        cooled = tick(resources, instance, cursor)
        reason = skip_text(cooled)
        assert "≥ 0.30 on window 2026-11-22T11" in reason and "run eeeeeeee was launched 0.0 h ago" in reason
        assert DriftCursor.parse(cooled.cursor).window == "window-20261122T1100"
        monkeypatch.setenv("MLOPS_DRIFT_COOLDOWN_HOURS", "0")
        assert len(tick(resources, instance, cursor).run_requests) == 1


def test_too_little_data_is_a_skip(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "invert", n=20)
        result = tick(resources, instance, cursor)
    assert skip_text(result) == "too little data on window 2026-11-22T11: 20 rows < 100 (minimum)"


def test_thresholds_come_from_the_environment(world, monkeypatch):
    _, _, add_window, resources = world
    add_window(0, "brightness")
    monkeypatch.setenv("MLOPS_DRIFT_SHARE", "1.0")
    with dg.DagsterInstance.ephemeral() as instance:
        result = tick(resources, instance)
    assert " < 1.00 on window 2026-11-22T10" in skip_text(result)


def test_missing_model_or_reference_is_a_skip(world, tmp_path):
    store, registry, add_window, _ = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        empty = ModelRegistryResource(home=str(tmp_path / "elsewhere"))
        assert "no production model" in skip_text(tick({"artifact_store": store, "model_registry": empty}, instance))
        registry.registry().pointer_path.write_text(json.dumps({"current": "v2"}))
        reason = skip_text(tick({"artifact_store": store, "model_registry": registry}, instance))
    assert reason == "no reference profile for production model v2: materialise reference_profile"


def test_run_failure_writes_an_alert_even_when_the_webhook_is_down(tmp_path, monkeypatch):
    @dg.asset
    def broken():
        raise ValueError("the disk is on fire")

    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/unreachable")
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([broken], instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in instance.all_logs(run.run_id) if e.dagster_event and
                       e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_event=failure.dagster_event,
            dagster_instance=instance, dagster_run=run,
        ).for_run_failure()
        run_failure_alert(context, artifact_store=store)
    lines = (tmp_path / "artifacts" / "alerts" / "alerts.jsonl").read_text().splitlines()
    alert = json.loads(lines[-1])
    assert alert["run_id"] == run.run_id and "the disk is on fire" in json.dumps(alert["failed_steps"])
    assert alert["delivery_problems"] and "webhook" in alert["delivery_problems"][0]


def test_record_alert_reports_an_unwritable_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    problems = record_alert({"text": "hi"}, blocker / "alerts.jsonl")
    assert problems and "not writable" in problems[0]
