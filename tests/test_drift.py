"""Drift scoring on real profiles: clean held-out digits do not alarm, every simulated drift does."""

import dagster as dg
import numpy as np
import pytest

from mlops_assets.core.data.features import image_features, with_predictions
from mlops_assets.core.monitoring.drift import (
    DriftThresholds,
    evaluate_drift,
    merge_profiles,
    profile_frame,
    profile_rows,
    read_profile,
    write_html_report,
    write_profile,
)
from mlops_assets.tools.simulator import DRIFT_KINDS, apply_drift

THRESHOLDS = DriftThresholds()  # the shipped defaults: the test is about them


@pytest.fixture(scope="module")
def digits_world():
    """Digits split 70/30, a small classifier standing in for the model, and the reference profile."""
    from sklearn.linear_model import LogisticRegression

    from mlops_assets.core.data.images import load_digits_dataset

    dataset = load_digits_dataset()
    order = np.random.default_rng(0).permutation(len(dataset.labels))
    train, held_out = order[:1257], order[1257:]
    x = dataset.images.reshape(len(dataset.images), -1) / 255.0
    model = LogisticRegression(max_iter=300).fit(x[train], dataset.labels[train])

    def frame(images, sizes=None):
        probabilities = model.predict_proba(images.reshape(len(images), -1) / 255.0)
        labels = [str(i) for i in probabilities.argmax(1)]
        return with_predictions(image_features(images, sizes), labels, probabilities.max(1))

    # as reference_profile does: the training images with their recorded sizes before resizing
    reference = profile_frame(frame(dataset.images[train], dataset.original_sizes[train]))
    return dataset, held_out, frame, reference


def traffic(digits_world, kind: str, n: int, seed: int = 1):
    dataset, held_out, frame, _ = digits_world
    idx = np.resize(np.random.default_rng(seed).permutation(held_out), n)
    images, _ = apply_drift(dataset.images[idx], dataset.labels[idx], kind, seed=seed)
    return profile_frame(frame(images))


@pytest.mark.parametrize("n", [300, 1500])
def test_clean_held_out_traffic_does_not_alarm(digits_world, n):
    verdict = evaluate_drift(traffic(digits_world, "none", n), digits_world[3], "2026-11-22T10", THRESHOLDS)
    assert verdict.enough_data and not verdict.is_drift, verdict.reason
    assert verdict.reason.startswith(f"drift share {verdict.drift_share:.2f} < 0.30 on window 2026-11-22T10")


@pytest.mark.parametrize("kind", [k for k in DRIFT_KINDS if k != "none"])
def test_each_simulated_drift_alarms(digits_world, kind):
    verdict = evaluate_drift(traffic(digits_world, kind, 300), digits_world[3], "2026-11-22T11", THRESHOLDS)
    assert verdict.is_drift, verdict.reason
    assert verdict.drift_share >= THRESHOLDS.drift_share
    assert "≥ 0.30 on window 2026-11-22T11" in verdict.reason
    assert all(f.p_value is not None for f in verdict.features if f.drifted)
    assert "| feature |" in verdict.markdown()


def test_too_little_data_is_not_an_alarm(digits_world):
    verdict = evaluate_drift(traffic(digits_world, "invert", 40), digits_world[3], "2026-11-22T12", THRESHOLDS)
    assert not verdict.enough_data and not verdict.is_drift
    assert verdict.reason == "too little data on window 2026-11-22T12: 40 rows < 100 (minimum)"


def test_profiles_merge_and_round_trip(digits_world, tmp_path):
    a, b = traffic(digits_world, "none", 200, seed=2), traffic(digits_world, "none", 300, seed=3)
    merged = merge_profiles([a, b])
    assert profile_rows(merged) == 500
    path = write_profile(merged, tmp_path / "p" / "profile.bin")
    again = read_profile(path)
    assert profile_rows(again) == 500
    assert not evaluate_drift(again, digits_world[3], "day", THRESHOLDS).is_drift
    html = write_html_report(again, digits_world[3], tmp_path / "drift.html")
    assert html.stat().st_size > 1000 and "<html" in html.read_text()[:5000].lower()


def test_the_drift_policy_resource_takes_its_defaults_from_the_environment(monkeypatch):
    from mlops_assets.core.common.settings import SettingError
    from resources.defaults import default_resources

    monkeypatch.setenv("MLOPS_DRIFT_SHARE", "0.5")
    monkeypatch.setenv("MLOPS_DRIFT_MIN_ROWS", "10")
    monkeypatch.setenv("MLOPS_RETRAIN_REQUIRES_NEW_DATA", "0")
    with dg.build_resources(default_resources()) as resources:  # as a run sees it (min_rows is an EnvVar.int)
        policy = resources.drift_policy
    t = policy.decision_policy().thresholds
    assert (t.drift_share, t.min_rows, t.p_value) == (0.5, 10, 0.05) and not policy.retrain_requires_new_data
    monkeypatch.setenv("MLOPS_DRIFT_SHARE", "3")
    with pytest.raises(ValueError, match="drift_share"):
        default_resources()["drift_policy"].decision_policy()
    monkeypatch.setenv("MLOPS_DRIFT_SHARE", "a lot")
    with pytest.raises(SettingError, match="MLOPS_DRIFT_SHARE must be a number"):
        default_resources()


def test_a_stricter_share_turns_an_alarm_into_a_skip(digits_world):
    strict = DriftThresholds(drift_share=1.0)
    verdict = evaluate_drift(traffic(digits_world, "invert", 300), digits_world[3], "w", strict)
    assert not verdict.is_drift and verdict.drifted_features


def test_unknown_sizes_are_left_out_and_known_sizes_are_scored(digits_world):
    """Batch-endpoint traffic cannot know the size before resizing: those columns are not scored,
    rather than read as drift; uploads of another size are scored, and show it."""
    dataset, held_out, frame, reference = digits_world
    images = dataset.images[held_out[:300]]
    batch = evaluate_drift(profile_frame(frame(images)), reference, "w", THRESHOLDS)
    by_column = {f.column: f for f in batch.features}
    assert by_column["original_height"].category == "NOT_SCORED" and not batch.is_drift
    uploads = evaluate_drift(profile_frame(frame(images, [(480, 640)] * len(images))), reference, "w", THRESHOLDS)
    assert {"original_height", "original_width"} <= set(uploads.drifted_features)
