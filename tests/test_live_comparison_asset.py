"""live_comparison on the real definitions, with real models: production (trained on the original digits) and a
challenger retrained on drifted (inverted) digits both answer the same drifted traffic, through the service's own
request path and shadow mirror; labels arrive through the feedback store. The challenger is judged better; the same
model in both slots, not enough evidence; a window without a shadow says so. feedback_sensor launches the comparison
for the windows a shadow scored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.core.data.images import load_digits_dataset, to_training_scale
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.serving.feedback import FeedbackItem, FeedbackStore
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from mlops_assets.core.serving.prediction_ids import new_prediction_ids
from mlops_assets.tools.simulator import apply_drift
from testkit.fixtures import make_resources
from tests.serving_fixtures import _train_linear_onnx

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)
N_TEST = 300
SIGNATURE = ModelSignature(tuple(str(d) for d in range(10)), 1, 8, 8)


def key(window: int) -> str:
    return (T0 + timedelta(hours=window)).strftime("%Y-%m-%d-%H:%M")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """v1 trained on the original digits, v2 on the same digits inverted (the drift the traffic has)."""
    from bentos.served_model import load_model

    root = tmp_path_factory.mktemp("comparison")
    digits = load_digits_dataset()
    train_x, train_y = digits.images[:-N_TEST], digits.labels[:-N_TEST]
    drifted_train, _ = apply_drift(train_x, train_y, "invert")
    metadata = {"class_names": [str(d) for d in range(10)], "spec": {"height": 8, "width": 8, "channels": 1}}
    models = {}
    for version, pixels in (("v1", train_x), ("v2", drifted_train)):
        _train_linear_onnx(to_training_scale(pixels), train_y, root / f"{version}.onnx", seed=0, steps=150)
        models[version] = load_model(root / f"{version}.onnx", f"image_classifier:{version}", version, {}, metadata,
                                     "production", SIGNATURE)
    # v3: v1's very model under another version (equal models)
    models["v3"] = load_model(root / "v1.onnx", "image_classifier:v3", "v3", {}, metadata, "shadow", SIGNATURE)
    test_x, test_y = apply_drift(digits.images[-N_TEST:], digits.labels[-N_TEST:], "invert")
    return root, models, to_training_scale(test_x), test_y


def serve_window(store_root: Path, production, shadow, images, truth, window: int) -> None:
    """The window's requests as the service answers them (production answers, the shadow mirrored, both logged
    under one id with their model time), then every one labelled."""
    from bentos.service import log_answer, shadow_logger
    from bentos.shadow_mirror import MirroredRequest, ShadowMirror

    at = T0 + timedelta(hours=window, minutes=5)
    ids = new_prediction_ids(len(images), at)
    with InferenceLogWriter(store_root) as log:
        mirror = ShadowMirror(shadow_logger(log))
        mirror.active = shadow
        for i in range(0, len(images), 10):  # batches of ten, as the adaptive batcher might merge them
            batch = images[i:i + 10]
            answer = production.answer(batch)
            names = [production.class_names[k] for k in answer[0].argmax(1)]
            assert log_answer(log, production, batch, answer, names, ids[i:i + 10], at, None, "inference_log", 1.0)
            if shadow is not None:
                assert mirror.offer(MirroredRequest(batch, ids[i:i + 10], at, None))
        assert mirror.drain(60)
        mirror.close()
    classes = [str(d) for d in range(10)]
    FeedbackStore(store_root).record([FeedbackItem(i, classes[int(t)]) for i, t in zip(ids, truth, strict=True)],
                                     classes, received_at=T0 + timedelta(hours=window + 1))


def materialize(resources, window: int, instance) -> dict:
    from mlops_assets.definitions import ASSETS

    result = dg.materialize(ASSETS, selection=["live_comparison"], partition_key=key(window), resources=resources,
                            instance=instance)
    assert result.success
    return result.asset_materializations_for_node("live_comparison")[0].metadata


def test_a_challenger_retrained_on_the_drift_is_judged_better_on_the_same_live_requests(world, tmp_path):
    from mlops_assets.core.monitoring.live_comparison import (
        BETTER,
        NO_CHALLENGER,
        NOT_ENOUGH,
        read_comparison,
        read_verdict,
    )
    from sensors.performance_sensors import COMPARISON_JOB, PERFORMANCE_JOB, evaluate_feedback_tick

    _, models, images, truth = world
    resources = make_resources(tmp_path)
    store = resources["artifact_store"]
    serve_window(store.root_path, models["v1"], models["v2"], images[:200], truth[:200], 0)  # drifted challenger
    serve_window(store.root_path, models["v1"], models["v3"], images[200:], truth[200:], 1)  # the same model
    serve_window(store.root_path, models["v1"], None, images[:50], truth[:50], 2)  # no shadow
    with dg.instance_for_test() as instance:
        better, equal, alone = (materialize(resources, w, instance) for w in range(3))

    # the challenger: right far more often on the same inverted digits, and the test says so
    assert better["verdict"].value == BETTER and better["verdict_code"].value == 1
    assert (better["production_version"].value, better["challenger_version"].value) == ("v1", "v2")
    assert better["answered"].value == better["compared"].value == better["labelled_pairs"].value == 200
    assert better["share_mirrored"].value == 1.0
    assert better["challenger_accuracy"].value > better["challenger_ci_low"].value > better["production_ci_high"].value
    assert better["p_value"].value < 1e-6
    assert better["challenger_only_right"].value > better["production_only_right"].value
    assert better["agreement"].value < 0.5  # they disagree on most requests
    assert better["production_model_ms_p50"].value == 1.0 and better["challenger_model_ms_p95"].value > 0.0
    # the figures shown are the file's, and the file is what another process reads
    report = Path(better["report_path"].value)
    payload, verdict = read_comparison(report), read_verdict(report)
    assert report.name == "comparison.json" and report.parent.name.startswith("comparison-20261122T1000-")
    assert (verdict.verdict, verdict.challenger_version, verdict.labelled_pairs) == (BETTER, "v2", 200)
    pair = payload["pairs"][0]
    assert verdict.production_accuracy == better["production_accuracy"].value == pair["production_correct"] / 200
    assert sum(map(sum, pair["confusion"])) == 200
    assert "| v1 \\ v2 |" in better["confusion_between_versions"].value
    assert "McNemar exact p" in better["versions"].value and "type I error ≤ alpha" in better["test"].value
    assert "data:image/png;base64," in better["over_windows"].value
    numeric = ("answered", "compared", "share_mirrored", "agreement", "labelled_pairs", "production_accuracy",
               "challenger_accuracy", "p_value", "alpha", "production_model_ms_p50", "challenger_model_ms_p50")
    assert all(isinstance(better[name], (dg.IntMetadataValue, dg.FloatMetadataValue)) for name in numeric)
    assert [k for k, v in better.items() if isinstance(v, dg.JsonMetadataValue)] == []

    # one model in both slots: every answer agrees, nothing to tell them apart
    assert equal["verdict"].value == NOT_ENOUGH and equal["agreement"].value == 1.0
    assert equal["production_accuracy"].value == equal["challenger_accuracy"].value and equal["p_value"].value == 1.0
    # no shadow in the window: materialised, and says so
    assert alone["status"].value == NO_CHALLENGER and alone["verdict"].value == NOT_ENOUGH
    assert alone["answered"].value == 50 and alone["compared"].value == 0 and "versions" not in alone

    # the labels arrived on windows 0–2: the comparison is launched for the two windows a shadow scored
    tick = evaluate_feedback_tick(None, store, T0 + timedelta(hours=5))
    launched = sorted((r.job_name, r.partition_key) for r in tick.run_requests)
    assert launched == sorted([(PERFORMANCE_JOB, key(0)), (PERFORMANCE_JOB, key(1)), (PERFORMANCE_JOB, key(2)),
                               (COMPARISON_JOB, key(0)), (COMPARISON_JOB, key(1))])
    assert len({r.run_key for r in tick.run_requests}) == 5


def test_the_comparison_job_and_the_sensor_targeting_it_are_wired():
    from mlops_assets.definitions import defs

    assert defs.resolve_job_def("live_comparison_job").partitions_def is not None
    targets = {t.job_name for t in defs.resolve_sensor_def("feedback_sensor").targets}
    assert targets == {"production_performance_job", "live_comparison_job"}
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == dg.AssetKey("live_comparison"))
    assert spec.group_name == "monitor"
