"""Drift under A/B: a window whose rows were answered by production and by the challenger is profiled per answering
version, and each version's rows are judged against that version's own reference (production's decide)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

from bentos.served_model import load_model
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.serving.inference_log import LOG_KIND
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from tests import serving_fixtures

serving_world = serving_fixtures.serving_world
SIGNATURE = ModelSignature(tuple(str(d) for d in range(10)), 1, 8, 8)
WINDOW_START = datetime(2026, 11, 22, 10, tzinfo=UTC)
WINDOW = "window-20261122T1000"


def loaded(world, version: str):
    described = world.registry.get(version)
    return load_model(described.onnx_path, described.tag, version, described.labels, described.metadata,
                      "production", SIGNATURE)


def publish_reference(store, model, images) -> None:
    """A version's reference as the layout holds it: the features of ``images`` and the version's own answers."""
    from mlops_assets.core.data.features import image_features, with_predictions
    from mlops_assets.core.monitoring.drift import profile_frame
    from mlops_assets.core.monitoring.profile_layout import reference_version

    probabilities = model.answer(images)[0]
    frame = with_predictions(image_features(images, None), [model.class_names[i] for i in probabilities.argmax(1)],
                             probabilities.max(1))
    store.profiles().publish(reference_version(model.version), profile_frame(frame),
                             {"model_version": model.version, "n_rows": len(frame)})


@pytest.fixture
def ab_window(serving_world, tmp_path):
    """An ended window: production v1 answered 120 images, the challenger v2 answered 80 (their clients' share)."""
    import dagster as dg

    from bentos.service import log_answer
    from mlops_assets.core.serving.prediction_ids import new_prediction_ids
    from mlops_assets.monitor_stage.profiles import inference_profiles
    from testkit.fixtures import make_resources

    resources = make_resources(tmp_path)
    store = resources["artifact_store"]
    v1, v2 = loaded(serving_world, "v1"), loaded(serving_world, "v2")
    x = serving_world.x_test
    at = WINDOW_START + timedelta(minutes=5)
    with InferenceLogWriter(store.root_path) as log:
        for model, images in ((v1, x[:120]), (v2, x[120:200])):
            answer = model.answer(images)
            names = [model.class_names[i] for i in answer[0].argmax(1)]
            assert log_answer(log, model, images, answer, names, new_prediction_ids(len(images), at), at, None,
                              LOG_KIND)
    result = dg.materialize([inference_profiles], partition_key="2026-11-22-10:00", resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return store, v1, v2


def test_a_window_answered_by_two_versions_is_profiled_per_answering_version(ab_window):
    from mlops_assets.core.monitoring.drift import profile_rows

    store, _, _ = ab_window
    profiles = store.profiles()
    assert profiles.answering_versions(WINDOW) == {"v1": 120, "v2": 80}
    assert profile_rows(profiles.read(WINDOW)) == 200  # the whole window, as before
    assert profile_rows(profiles.read_answered(WINDOW, "v1")) == 120
    assert profile_rows(profiles.read_answered(WINDOW, "v2")) == 80
    assert profiles.answered_rows(WINDOW, "v3") == 0 and profiles.read_answered(WINDOW, "v3") is None


def test_each_version_s_rows_are_judged_against_its_own_reference(ab_window, serving_world):
    from mlops_assets.core.monitoring.window_judgement import judge_windows, others_metadata
    from resources.drift_policy import DriftPolicy

    store, v1, v2 = ab_window
    x = serving_world.x_test
    publish_reference(store, v1, x[:200])
    publish_reference(store, v2, x[:200])
    profiles = store.profiles()
    policy = DriftPolicy(min_rows=50).decision_policy()
    judged, = judge_windows(profiles, [WINDOW], profiles.read("reference-v1"), serving_world.registry.get("v1"),
                            policy)
    assert judged.verdict.n_rows == 120  # production's rows decide, against production's reference
    other, = judged.others
    assert (other.model_version, other.rows, other.reference) == ("v2", 80, "reference-v2")
    assert other.verdict.n_rows == 80
    metadata = others_metadata(judged.others)
    assert metadata["answered_by/v2"].startswith("80 rows against reference-v2: ")
    assert metadata["drift_share/answered_by/v2"] == float(other.verdict.drift_share)

    shutil.rmtree(profiles.directory("reference-v2"))  # a version without a reference is named, not judged
    judged, = judge_windows(profiles, [WINDOW], profiles.read("reference-v1"), serving_world.registry.get("v1"),
                            policy)
    assert judged.others[0].verdict is None
    assert "no reference profile reference-v2" in others_metadata(judged.others)["answered_by/v2"]
