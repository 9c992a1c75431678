"""The harm trigger: retrain when the accuracy estimated without labels (ATC) drops, not when pixels merely move.

The production version carries its validation record (confidences, class mix, accuracy, ATC threshold), as
registration stores it; windows are real whylogs profiles of digits features plus model outputs.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from mlops_assets.automation import drift_sensor
from mlops_assets.core.common import settings
from mlops_assets.core.data.features import image_features, with_predictions
from mlops_assets.core.monitoring.drift import profile_frame
from mlops_assets.core.monitoring.output_reference import (
    OUTPUT_REFERENCE_KEY,
    OutputReference,
    atc_estimate,
    atc_threshold,
    fit_output_reference,
    output_reference_of,
)
from mlops_assets.core.monitoring.output_verdict import judge_outputs, outputs_from_profile
from mlops_assets.core.monitoring.profile_layout import reference_version, window_version
from mlops_assets.core.monitoring.retrain_decision import TriggerPolicy
from mlops_assets.tools.simulator import apply_drift
from resources.alerts import AlertSink
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource
from testkit.release_tests import record_release_test_without_a_bento

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


def test_the_atc_estimate_equals_a_hand_computation():
    validation = np.array([0.99, 0.2, 0.9, 0.4, 0.95, 0.5, 0.6, 0.97, 0.7, 0.8])
    correct = np.array([1, 0, 1, 0, 1, 0, 1, 1, 1, 1], dtype=bool)  # 7 of 10 right: accuracy 0.7
    reference = fit_output_reference(validation, ["a"] * 5 + ["b"] * 5, correct)
    # 7 validation rows must lie above t: sorted 0.2 0.4 0.5 | 0.6 … 0.99, so t = 0.5 (the 3rd smallest)
    assert reference.validation_accuracy == pytest.approx(0.7)
    assert reference.atc_threshold == pytest.approx(0.5)
    assert atc_estimate(validation, reference.atc_threshold) == pytest.approx(0.7)
    window = np.array([0.3, 0.45, 0.5, 0.55, 0.65, 0.99])  # above 0.5: 0.55, 0.65, 0.99 → 3/6
    assert atc_estimate(window, reference.atc_threshold) == pytest.approx(0.5)
    assert atc_threshold(validation, 1.0) < 0.2 and atc_threshold(validation, 0.0) == pytest.approx(0.99)
    # the same figure from the window's whylogs profile, as the sensor reads it (never the rows)
    frame = with_predictions(image_features(np.zeros((6, 1, 8, 8), np.uint8)), ["a", "a", "b", "b", "b", "b"], window)
    outputs = outputs_from_profile(profile_frame(frame))
    assert outputs.n_rows == 6 and outputs.class_counts == {"a": 2, "b": 4}
    verdict = judge_outputs(reference, outputs)
    assert verdict.estimated_accuracy == pytest.approx(0.5) and verdict.method == "ATC"
    assert verdict.drop_points == pytest.approx(20.0)
    assert output_reference_of({OUTPUT_REFERENCE_KEY: reference.as_dict()}) == reference
    assert output_reference_of({"metrics": {}}) is None  # registered before the record existed


def test_the_trigger_policy_is_validated_where_it_is_used():
    with pytest.raises(ValueError, match="MLOPS_RETRAIN_TRIGGER"):
        TriggerPolicy("pixels")
    with pytest.raises(ValueError, match="MLOPS_HARM_POINTS"):
        TriggerPolicy("harm", 0.0)
    # harm is the default: the setting, the resource the sensor and drift_report read, and the pure policy
    assert settings.default_value(settings.RETRAIN_TRIGGER) == "harm"
    assert DriftPolicy().decision_policy().trigger == TriggerPolicy("harm", 5.0) == TriggerPolicy()


@pytest.fixture(scope="module")
def digits():
    from mlops_assets.core.data.images import load_digits_dataset

    dataset = load_digits_dataset()
    order = np.random.default_rng(0).permutation(len(dataset.labels))
    return dataset, order[:1257], order[1257:]


def confident(n: int, seed: int) -> np.ndarray:
    """Confidences of a model sure of itself, as on its validation split."""
    return np.random.default_rng(seed).uniform(0.85, 1.0, n)


def frame(dataset, idx, drift: str, confidences: np.ndarray, seed: int):
    images, labels = apply_drift(dataset.images[idx], dataset.labels[idx], drift, seed=seed)
    return with_predictions(image_features(images), [str(v) for v in labels], confidences[: len(labels)])


def make_world(tmp_path, digits, with_record: bool):
    """Production trained on a labelled folder (new labelled data already waits), with or without its record."""
    from PIL import Image

    dataset, train, held_out = digits
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    registry = ModelRegistryResource(home=str(tmp_path / "bentoml"))
    folder = tmp_path / "labelled"
    (folder / "a").mkdir(parents=True)
    Image.new("L", (8, 8), 128).save(folder / "a" / "first.png")
    source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8)
    metadata = {"class_names": [str(c) for c in range(10)], "spec": {"height": 8, "width": 8, "channels": 1}}
    if with_record:
        val = held_out[:250]  # validation: 96 % right, confident
        correct = np.arange(len(val)) < 240
        record = fit_output_reference(confident(len(val), 1), [str(v) for v in dataset.labels[val]], correct)
        metadata[OUTPUT_REFERENCE_KEY] = record.as_dict()
    onnx = tmp_path / "v1.onnx"
    onnx.write_bytes(b"not loaded by the sensor")
    registry.registry().register(
        onnx,
        "v1",
        labels={"dataset_version": "dataset-v1", "source_fingerprint": source.fingerprint()},
        metadata=metadata,
    )
    record_release_test_without_a_bento(registry.registry(), "v1")  # the registry serves only release-tested ones
    registry.registry().promote("v1", reason="test setup", actor="test")
    store.profiles().publish(
        reference_version("v1"), profile_frame(frame(dataset, train, "none", confident(len(train), 2), 0)), {}
    )
    Image.new("L", (8, 8), 128).save(folder / "a" / "second.png")  # new labelled data: retraining is possible

    def add_window(hour: int, drift: str, confidences: np.ndarray) -> None:
        idx = np.resize(held_out, 300)
        start = T0 + timedelta(hours=hour)
        store.profiles().publish(
            window_version(start),
            profile_frame(frame(dataset, idx, drift, confidences, hour)),
            {"n_rows": 300, "start": start.isoformat()},
        )

    resources = {
        "artifact_store": store,
        "model_registry": registry,
        "dataset_source": source,
        "drift_policy": DriftPolicy(),  # the default policy: the harm trigger
        "alert_sink": AlertSink(file=str(tmp_path / "alerts.jsonl")),
    }
    return add_window, resources


def tick(resources, **policy) -> dg.SensorResult:
    """One drift-sensor tick under the default drift policy, or with ``policy``'s fields changed."""
    resources = {**resources, "drift_policy": DriftPolicy(**policy)}
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = drift_sensor(context)
        drift_sensor.resolve_run_requests(result.run_requests or [], context, None, [])
    return result


def record(result) -> dict:
    return {k: v.value for k, v in result.asset_events[-1].metadata.items()}


def test_a_harmless_shift_launches_no_retrain_under_the_default_policy_but_does_under_the_pixel_policy(
    tmp_path, digits
):
    """Brightness moves every pixel statistic, but the model stays as sure of itself as on validation."""
    add_window, resources = make_world(tmp_path, digits, with_record=True)
    add_window(0, "brightness", confident(300, 10))
    default = tick(resources)
    assert not default.run_requests
    reason = default.skip_reason.skip_message
    assert "(ATC) vs 0.96 at registration" in reason and "→ no retrain (harm trigger)" in reason
    assert "≥ 0.30 (would alarm under the pixel trigger)" in reason
    shown = record(default)
    assert shown["retrain_signal"] == "harm" and shown["is_drift"] is True and shown["retrain"] is False
    assert abs(shown["estimated_accuracy"] - 0.96) < 0.05 and shown["estimate_method"] == "ATC"
    assert {"confidence_ks_p_value", "class_mix_p_value", "drift_share"} <= set(shown)
    pixel = tick(resources, retrain_trigger="pixel")
    assert len(pixel.run_requests) == 1 and pixel.run_requests[0].tags["mlops/retrain_signal"] == "pixel"
    assert "→ retrain (pixel trigger)" in record(pixel)["decision"]  # the reason names the signal that decided


def test_a_harmful_shift_launches_under_the_default_and_the_pixel_policy_and_says_which_signal_decided(
    tmp_path, digits
):
    add_window, resources = make_world(tmp_path, digits, with_record=True)
    add_window(0, "brightness", np.random.default_rng(11).uniform(0.3, 0.9, 300))  # the model is lost
    default = tick(resources)
    assert len(default.run_requests) == 1 and default.run_requests[0].tags["mlops/retrain_signal"] == "harm"
    shown = record(default)
    assert shown["retrain"] is True and shown["estimated_accuracy_drop_points"] >= 5
    assert "(harm trigger)" in shown["decision"] and "→ retrain" in shown["decision"]
    assert len(tick(resources, retrain_trigger="pixel").run_requests) == 1


def test_a_version_registered_before_the_record_is_judged_by_pixels_and_says_so(tmp_path, digits):
    add_window, resources = make_world(tmp_path, digits, with_record=False)
    add_window(0, "brightness", confident(300, 10))  # harmless, but pixels are all this version can be judged by
    result = tick(resources)
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["mlops/retrain_signal"] == "pixel"
    shown = record(result)
    assert shown["retrain_signal"] == "pixel" and "estimated_accuracy" not in shown
    assert "registered without a validation output record" in shown["estimated_accuracy_note"]
    assert "pixel policy used" in shown["decision"]


def test_a_malformed_record_is_an_error_naming_it():
    from mlops_assets.core.monitoring.output_reference import OutputReferenceError

    with pytest.raises(OutputReferenceError, match="malformed output_reference"):
        OutputReference.from_dict({"validation_accuracy": 0.9})


def test_production_performance_shows_the_estimate_beside_the_measured_accuracy(tmp_path, digits):
    from mlops_assets.core.monitoring.output_checks import estimate_beside_measured

    add_window, resources = make_world(tmp_path, digits, with_record=True)
    add_window(0, "none", np.random.default_rng(11).uniform(0.3, 0.9, 300))
    profiles, production = resources["artifact_store"].profiles(), resources["model_registry"].registry().production()
    window = window_version(T0)
    shown = estimate_beside_measured(profiles, window, production, measured=0.5)
    expected = atc_estimate(
        outputs_from_profile(profiles.read(window)).confidences, output_reference_of(production.metadata).atc_threshold
    )
    assert shown["estimated_accuracy"] == pytest.approx(expected) and shown["estimate_method"].startswith("ATC")
    assert shown["estimate_error_points"] == pytest.approx(100 * (expected - 0.5))
    assert (
        "no profile yet"
        in estimate_beside_measured(profiles, window_version(T0 + timedelta(hours=5)), production, 0.5)[
            "estimated_accuracy_note"
        ]
    )
