"""The drift sensor's cursor logic and the run-failure alert, on a real (ephemeral) Dagster instance.

Production carries its validation record (as registration stores it), so the default policy (the harm trigger)
decides: clean windows keep the model as sure of itself as on validation, drifted ones do not. The tests of the
pixel rule's own figures set ``retrain_trigger="pixel"``; tests/test_harm_trigger.py compares the two."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.automation import drift_sensor
from mlops_assets.core.data.features import image_features, with_predictions
from mlops_assets.core.monitoring.drift import profile_frame
from mlops_assets.core.monitoring.output_reference import OUTPUT_REFERENCE_KEY, fit_output_reference
from mlops_assets.core.monitoring.profile_layout import reference_version, window_version
from mlops_assets.core.monitoring.retrain_decision import DriftCursor
from mlops_assets.definitions import defs
from mlops_assets.tools.simulator import apply_drift
from resources.alerts import AlertSink, record_alert
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource
from sensors.alerts import run_failure_alert
from testkit.release_tests import record_release_test_without_a_bento

MODEL = "v1"
T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def digits():
    from mlops_assets.core.data.images import load_digits_dataset

    dataset = load_digits_dataset()
    order = np.random.default_rng(0).permutation(len(dataset.labels))
    return dataset, order[:1257], order[1257:]


def frame(dataset, idx, drift="none", seed=0):
    images, labels = apply_drift(dataset.images[idx], dataset.labels[idx], drift, seed=seed)
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.85, 1.0, len(labels)) if drift == "none" else rng.uniform(0.3, 0.9, len(labels))
    return with_predictions(image_features(images), [str(v) for v in labels], confidence)


def validation_record() -> dict:
    """The validation outputs registration stores: 96 % right, as sure of itself as on clean traffic."""
    rng = np.random.default_rng(1)
    record = fit_output_reference(rng.uniform(0.85, 1.0, 250), [str(v % 10) for v in range(250)],
                                  np.arange(250) < 240)
    return record.as_dict()


def register_model(registry: ModelRegistryResource, version: str, source: DatasetSource, root) -> None:
    """A registered production version trained on what ``source`` holds now (the sensor never loads it)."""
    onnx = root / f"{version}.onnx"
    onnx.write_bytes(b"not loaded by the sensor")
    registry.registry().register(
        onnx, version,
        labels={"dataset_version": f"dataset-{version}", "source_fingerprint": source.fingerprint()},
        metadata={"class_names": ["a", "b"], "spec": {"height": 8, "width": 8, "channels": 1},
                  OUTPUT_REFERENCE_KEY: validation_record()},
    )
    record_release_test_without_a_bento(registry.registry(), version)
    registry.registry().promote(version, reason="test setup", actor="test")


def add_labelled_image(folder, name: str) -> None:
    from PIL import Image

    Image.new("L", (8, 8), 128).save(folder / "a" / f"{name}.png")


@pytest.fixture
def world(tmp_path, digits):
    """A production model trained on a labelled folder, its reference profile, and a way to add windows."""
    dataset, train, held_out = digits
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    registry = ModelRegistryResource(home=str(tmp_path / "bentoml"))
    folder = tmp_path / "labelled"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
    add_labelled_image(folder, "first")
    source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8)
    register_model(registry, MODEL, source, tmp_path)
    store.profiles().publish(reference_version(MODEL), profile_frame(frame(dataset, train)), {"n_rows": len(train)})

    def add_window(hour: int, drift: str = "none", n: int = 300) -> str:
        idx = np.resize(held_out, n)
        rows = frame(dataset, idx, drift, seed=hour)
        start = T0 + timedelta(hours=hour)
        version = window_version(start)
        store.profiles().publish(version, profile_frame(rows), {"n_rows": n, "start": start.isoformat()})
        return version

    resources = {"artifact_store": store, "model_registry": registry, "dataset_source": source,
                 "drift_policy": DriftPolicy(), "alert_sink": AlertSink(file=str(tmp_path / "alerts.jsonl"))}
    return store, registry, add_window, resources


def new_labelled_data(resources, name: str = "new") -> None:
    """Someone labels more images and adds them to the source."""
    add_labelled_image(Path(resources["dataset_source"].path), name)


def with_policy(resources, **policy) -> dict:
    return {**resources, "drift_policy": DriftPolicy(**policy)}


def tick(resources, instance, cursor=None, definitions=None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=definitions)
    result = drift_sensor(context)
    # as the daemon does: each request must name one of the jobs the sensor targets
    drift_sensor.resolve_run_requests(result.run_requests or [], context, None, [])
    return result


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests, result.run_requests
    return result.skip_reason.skip_message


def test_clean_window_is_a_skip_with_a_readable_reason_and_advances_the_cursor(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        result = tick(resources, instance)
        reason = skip_text(result)
        assert reason.startswith("estimated accuracy 0.9") and "(ATC) vs 0.96 at registration" in reason
        assert "< 5 → no retrain (harm trigger) on window 2026-11-22T10; pixel drift share 0.00 < 0.30" in reason
        assert DriftCursor.parse(result.cursor).window == "window-20261122T1000"
        pixel = tick(with_policy(resources, retrain_trigger="pixel"), instance)
    assert skip_text(pixel).startswith("drift share 0.00 < 0.30 on window 2026-11-22T10")
    assert "→ no retrain (pixel trigger)" in skip_text(pixel)


def test_every_judged_window_is_recorded_as_drift_reports_materialization(world):
    """The verdicts the UI plots: one record per window, its figures numeric, whatever the decision."""
    _, _, add_window, resources = world
    add_window(0)
    add_window(1, "invert")
    add_window(2, "invert", n=20)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = DriftCursor(window="window-20261122T0900").dump()
        result = tick(resources, instance, cursor)
    records = {event.partition: event for event in result.asset_events}
    assert set(records) == {"2026-11-22-10:00", "2026-11-22-11:00", "2026-11-22-12:00"}
    assert all(event.asset_key == dg.AssetKey("drift_report") for event in records.values())
    clean, drifted, thin = (records[k].metadata for k in sorted(records))
    assert clean["is_drift"].value is False and drifted["is_drift"].value is True
    assert drifted["drift_share"].value > clean["drift_share"].value and drifted["n_rows"].value == 300
    assert drifted["hellinger/mean_c0"].value > clean["hellinger/mean_c0"].value
    assert thin["enough_data"].value is False and "too little data" in thin["reason"].value
    assert Path(drifted["html_report"].value).is_file() and "html_report" not in thin
    assert "materialise this partition" in clean["html_report"].value  # whylogs' HTML: drifted windows only
    assert drifted["reference"].value == reference_version(MODEL)


def test_one_drift_event_gives_exactly_one_run_request(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "brightness")
        new_labelled_data(resources)
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
        new_labelled_data(resources)
        result = tick(resources, instance, cursor)
    assert [r.run_key for r in result.run_requests] == [f"drift-20261122T1100-{reference_version(MODEL)}"]
    assert DriftCursor.parse(result.cursor).window == "window-20261122T1300"


def test_no_run_while_a_retraining_run_is_in_flight(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "noise")
        new_labelled_data(resources)
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


def test_cooldown_after_a_drift_run_then_disabled(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        instance.add_run(
            dg.DagsterRun(job_name="retrain_job", run_id="e" * 32, status=dg.DagsterRunStatus.SUCCESS,
                          tags={"mlops/kind": "training", "mlops/trigger": "drift"})
        )
        add_window(1, "rotation")
        new_labelled_data(resources)
        cooled = tick(resources, instance, cursor)
        reason = skip_text(cooled)
        assert "→ retrain (harm trigger) on window 2026-11-22T11" in reason
        assert "run eeeeeeee was launched 0.0 h ago" in reason
        assert DriftCursor.parse(cooled.cursor).window == "window-20261122T1100"
        assert len(tick(with_policy(resources, cooldown_hours=0), instance, cursor).run_requests) == 1


def test_too_little_data_is_a_skip(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "invert", n=20)
        result = tick(resources, instance, cursor)
    assert skip_text(result) == "too little data on window 2026-11-22T11: 20 rows < 100 (minimum)"


def test_thresholds_come_from_the_drift_policy_resource(world):
    _, _, add_window, resources = world
    add_window(0, "brightness")
    with dg.DagsterInstance.ephemeral() as instance:
        pixel = tick(with_policy(resources, retrain_trigger="pixel", drift_share=1.0), instance)
        harm = tick(with_policy(resources, harm_points=100.0), instance)
    assert " < 1.00 on window 2026-11-22T10" in skip_text(pixel)
    assert "< 100 → no retrain (harm trigger)" in skip_text(harm)


def test_missing_model_is_a_skip(world, tmp_path):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        empty = ModelRegistryResource(home=str(tmp_path / "elsewhere"))
        assert "no production model" in skip_text(tick({**resources, "model_registry": empty}, instance))


def test_a_production_version_without_a_reference_gets_one_and_a_long_blind_spell_alerts_once(world, tmp_path):
    """Promoted by a path that built no reference (CLI promote, approve, rollback, reinstate, an older build): the
    sensor requests the reference of the version in production, and alerts a person once if windows stay unjudged
    for longer than the policy's span."""
    store, registry, add_window, resources = world
    add_window(0)
    register_model(registry, "v2", resources["dataset_source"], tmp_path)  # promoted, no reference profile
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(resources, instance)
        request, = first.run_requests
        assert request.job_name == "reference_profile_job" and request.run_key == "reference-v2"
        assert request.run_config == {"ops": {"reference_profile": {"config": {"version": "v2"}}}}
        assert alerts(resources) == []  # blind for less than the span: no alert yet
        blind = DriftCursor.parse(first.cursor)
        assert blind.blind_since and blind.window is None  # the window waits to be judged
        hours_ago = DriftCursor.parse(first.cursor).replace(
            blind_since=(datetime.now(UTC) - timedelta(hours=2)).isoformat()).dump()
        late = tick(with_policy(resources, blind_alert_minutes=60), instance, hours_ago)
        assert late.run_requests[0].run_key == "reference-v2"  # the same key: Dagster launches it once
        alert, = alerts(resources)
        assert alert["kind"] == "drift_monitor_blind" and alert["model_version"] == "v2"
        assert "cannot judge traffic" in alert["text"]
        again = tick(with_policy(resources, blind_alert_minutes=60), instance, late.cursor)
        assert len(alerts(resources)) == 1 and again.run_requests  # alerted once per blind spell
        store.profiles().publish(reference_version("v2"), store.profiles().read(reference_version(MODEL)), {})
        judged = tick(resources, instance, again.cursor)
        assert skip_text(judged).startswith("estimated accuracy")
        assert DriftCursor.parse(judged.cursor).blind_since is None


def alerts(resources) -> list[dict]:
    path = Path(resources["alert_sink"].file)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_drift_without_new_labelled_data_skips_and_alerts_once_per_episode(world):
    """Retraining on an unchanged source reproduces production: skip, say so, and tell a person once."""
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "invert")
        first = tick(resources, instance, cursor)
        reason = skip_text(first)
        assert reason.startswith("estimated accuracy") and "→ retrain (harm trigger) on window 2026-11-22T11" in reason
        assert "no new labelled data since dataset version dataset-v1" in reason and "a person was alerted" in reason
        assert [a["kind"] for a in alerts(resources)] == ["drift_without_new_data"]
        assert "Label recent production images" in alerts(resources)[0]["text"]
        add_window(2, "invert")  # the same episode goes on: skipped, not alerted again
        second = tick(resources, instance, first.cursor)
        assert "no new labelled data" in skip_text(second) and "alerted" not in skip_text(second)
        assert len(alerts(resources)) == 1
        add_window(3)  # the episode ends
        ended = tick(resources, instance, second.cursor)
        add_window(4, "invert")  # a new episode is alerted again
        tick(resources, instance, ended.cursor)
        assert len(alerts(resources)) == 2


def test_labelled_data_arriving_after_the_drift_launches_exactly_one_run(world):
    _, _, add_window, resources = world
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "invert")
        waiting = tick(resources, instance, cursor)
        assert "no new labelled data" in skip_text(waiting)
        idle = tick(resources, instance, waiting.cursor)
        assert "drift on window 2026-11-22T11 still waits for new labelled data" in skip_text(idle)
        new_labelled_data(resources)
        launched = tick(resources, instance, waiting.cursor)
        assert len(launched.run_requests) == 1
        request = launched.run_requests[0]
        assert request.run_key.startswith(f"drift-20261122T1100-{reference_version(MODEL)}-data-")
        assert request.tags["mlops/drift_window"] == "2026-11-22T11"
        after = tick(resources, instance, launched.cursor)
        assert skip_text(after) == "no new profile window since 2026-11-22T11"


def test_a_refused_retrain_is_not_launched_again_on_the_same_source(world):
    """Drift, new labelled data, one retraining run; the gate refuses its model (or it awaits approval), so
    production still carries the old fingerprint. Later drifted windows on the identical source: no second run,
    one alert."""
    _, _, add_window, resources = world
    resources = with_policy(resources, cooldown_hours=0)
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        new_labelled_data(resources)
        add_window(1, "invert")
        launched = tick(resources, instance, cursor)
        assert len(launched.run_requests) == 1
        add_window(2, "invert")  # the run ended; production did not change
        second = tick(resources, instance, launched.cursor)
        reason = skip_text(second)
        assert "a retraining run on this labelled source was already launched" in reason
        assert "a person was alerted" in reason
        assert [a["kind"] for a in alerts(resources)] == ["retrain_on_same_data_refused"]
        add_window(3, "invert")
        third = tick(resources, instance, second.cursor)
        assert "already launched" in skip_text(third) and len(alerts(resources)) == 1
        new_labelled_data(resources, "more")  # more labels: a new retraining is worth it
        add_window(4, "invert")
        assert len(tick(resources, instance, third.cursor).run_requests) == 1


def test_the_new_data_requirement_can_be_turned_off(world):
    _, _, add_window, resources = world
    resources = with_policy(resources, retrain_requires_new_data=False)
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "invert")
        assert len(tick(resources, instance, cursor).run_requests) == 1


def test_retraining_runs_carry_the_run_config_the_policy_names(world, tmp_path):
    """A cheaper (or heavier) search for automated retraining: the file's run config goes with the request, and
    is validated against retrain_job's config schema before anything is launched."""
    _, _, add_window, resources = world
    config = tmp_path / "retrain.yaml"
    config.write_text("ops:\n  trained_model:\n    config:\n      learning_rates: [0.003]\n      hidden: [32]\n")
    add_window(0)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = tick(resources, instance).cursor
        add_window(1, "invert")
        new_labelled_data(resources)
        request, = tick(with_policy(resources, retrain_run_config=str(config)), instance, cursor).run_requests
        assert request.run_config == {"ops": {"trained_model": {"config": {"learning_rates": [0.003], "hidden": [32]}}}}
        assert request.tags["mlops/run_config"] == str(config)
        default, = tick(resources, instance, cursor).run_requests  # no file named: the job's defaults
        assert default.run_config == {} and "mlops/run_config" not in default.tags

        for text, why in [("ops: [1, 2", "is not YAML"), ("- 1\n", "must be a mapping"),
                          ("ops:\n  trained_model:\n    config:\n      hidden: wide\n", "hidden")]:
            config.write_text(text)
            with pytest.raises(ValueError, match=why) as error:  # checked against retrain_job's config schema
                tick(with_policy(resources, retrain_run_config=str(config)), instance, cursor, definitions=defs)
            assert str(config) in str(error.value) and "MLOPS_RETRAIN_RUN_CONFIG" in str(error.value)
        with pytest.raises(ValueError, match="does not exist"):
            tick(with_policy(resources, retrain_run_config=str(tmp_path / "missing.yaml")), instance, cursor)


def test_run_failure_writes_an_alert_even_when_the_webhook_is_down(tmp_path):
    @dg.asset
    def broken():
        raise ValueError("the disk is on fire")

    sink = AlertSink(file=str(tmp_path / "alerts" / "alerts.jsonl"), webhook_url="http://127.0.0.1:9/unreachable")
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
        run_failure_alert(context, alert_sink=sink)
    lines = (tmp_path / "alerts" / "alerts.jsonl").read_text().splitlines()
    alert = json.loads(lines[-1])
    assert alert["run_id"] == run.run_id and "the disk is on fire" in json.dumps(alert["failed_steps"])
    assert alert["delivery_problems"] and "webhook" in alert["delivery_problems"][0]


def test_record_alert_reports_an_unwritable_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    problems = record_alert({"text": "hi"}, blocker / "alerts.jsonl")
    assert problems and "not writable" in problems[0]


def test_the_profiling_sensor_leaves_no_window_missing(tmp_path, monkeypatch):
    """Every ended window: profiled already (skipped), with traffic (one run), or without (recorded empty)."""
    from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
    from sensors.profiling_sensor import evaluate_profiling_tick

    monkeypatch.setenv("MLOPS_MONITOR_START", (T0 - timedelta(hours=2)).strftime("%Y-%m-%d-%H:%M"))
    monkeypatch.delenv("MLOPS_PROFILE_CRON", raising=False)
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    store.profiles().publish(window_version(T0 - timedelta(hours=1)), profile_frame(frame_of_digits()), {})
    with InferenceLogWriter(store.root_path, flush_interval_s=0.05, clock=lambda: T0 + timedelta(minutes=5)) as log:
        rows = frame_of_digits()
        log.log(rows.drop(columns=["predicted_class", "confidence"]), rows["predicted_class"].tolist(),
                rows["confidence"].to_numpy(), MODEL)
        assert log.flush()
    now = T0 + timedelta(hours=2, minutes=1)  # windows 08:00 … 11:00 have ended; 12:00 has not
    first = evaluate_profiling_tick(None, store, now)
    assert [r.partition_key for r in first.run_requests] == ["2026-11-22-10:00"]
    assert first.run_requests[0].run_key == "profile-2026-11-22-10:00"
    assert [e.partition for e in first.asset_events] == ["2026-11-22-08:00", "2026-11-22-11:00"]
    assert all(e.metadata["n_rows"].value == 0 for e in first.asset_events)
    assert first.cursor == "2026-11-22-11:00"
    again = evaluate_profiling_tick(first.cursor, store, now)
    assert again.skip_reason.skip_message == "no window has ended since 2026-11-22-11:00"


def test_a_sub_hour_window_without_traffic_starts_no_run_though_its_hour_has_log_files(tmp_path, monkeypatch):
    """Issue 32: with 15-minute windows, traffic at 10:05 is one run (10:00); 10:15, 10:30 and 10:45 share its
    hour's directory but hold none of its rows: recorded empty, no run (a container on the Docker stack)."""
    from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
    from sensors.profiling_sensor import evaluate_profiling_tick

    monkeypatch.setenv("MLOPS_MONITOR_START", T0.strftime("%Y-%m-%d-%H:%M"))
    monkeypatch.setenv("MLOPS_PROFILE_CRON", "*/15 * * * *")
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    with InferenceLogWriter(store.root_path, flush_interval_s=0.05, clock=lambda: T0 + timedelta(minutes=5)) as log:
        rows = frame_of_digits(20)
        log.log(rows.drop(columns=["predicted_class", "confidence"]), rows["predicted_class"].tolist(),
                rows["confidence"].to_numpy(), MODEL)
        assert log.flush()
    tick = evaluate_profiling_tick(None, store, T0 + timedelta(hours=1, minutes=1))
    assert [r.partition_key for r in tick.run_requests] == [T0.strftime("%Y-%m-%d-%H:%M")]
    assert [e.partition for e in tick.asset_events] == [
        (T0 + timedelta(minutes=m)).strftime("%Y-%m-%d-%H:%M") for m in (15, 30, 45)]


def frame_of_digits(n: int = 150):
    from mlops_assets.core.data.images import load_digits_dataset

    data = load_digits_dataset()
    return with_predictions(image_features(data.images[:n]), [str(v) for v in data.labels[:n]], np.full(n, 0.9))
