"""The out-of-distribution score of every answer (issue 36): a real small CNN of the served architecture, exported
to ONNX and calibrated on its validation split; the served model's answers, the inference log and the refusal."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

import numpy as np
import pytest

from mlops_assets.core.model.ood import (
    UNCALIBRATED,
    calibrate,
    calibrate_mahalanobis,
    calibration_of,
    energy_scores,
    mahalanobis_scores,
)
from testkit.ood_models import constant_images, train_digits_cnn, uniform_noise
from testkit.release_tests import record_release_test_without_a_bento


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    return train_digits_cnn(tmp_path_factory.mktemp("ood"), hidden=8, epochs=6)


@pytest.fixture(scope="module")
def served(digits_model):
    """The model as the service loads it (bentos.served_model.load_model), its calibration in its metadata."""
    from bentos.served_model import load_model
    from mlops_assets.core.model.onnx_model import onnx_logits_and_features, open_session
    from mlops_assets.core.model.signature import ModelSignature

    session = open_session(digits_model.onnx_path)
    calibration = calibrate_mahalanobis(onnx_logits_and_features(session, digits_model.x_train)[1],
                                        digits_model.y_train,
                                        onnx_logits_and_features(session, digits_model.x_val)[1], fpr=0.05)
    spec = {"channels": 1, "height": 8, "width": 8}
    metadata = {"class_names": digits_model.class_names, "spec": spec, "ood": calibration.as_metadata()}
    return load_model(digits_model.onnx_path, "image_classifier:v1", "v1", {}, metadata, "pinned",
                      ModelSignature.from_metadata(metadata))


def test_energy_score_is_minus_logsumexp():
    logits = np.array([[1000.0, 0.0], [0.0, 0.0]])
    assert energy_scores(logits) == pytest.approx([-1000.0, -np.log(2.0)])


def test_mahalanobis_score_is_the_squared_distance_to_the_nearest_class_mean():
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    precision = np.diag([1.0, 4.0])  # covariance diag(1, 0.25)
    features = np.array([[1.0, 0.0], [9.0, 1.0], [5.0, 0.5]])
    assert mahalanobis_scores(features, means, precision) == pytest.approx([1.0, 1.0 + 4.0, 25.0 + 1.0])


def test_the_export_gives_the_penultimate_features_beside_the_same_logits(digits_model):
    from mlops_assets.core.model.onnx_model import has_features, onnx_logits, onnx_logits_and_features, open_session

    session = open_session(digits_model.onnx_path)
    assert has_features(session)
    logits, features = onnx_logits_and_features(session, digits_model.x_test[:5])
    assert features.shape == (5, 16)  # hidden=8: 16 channels in the last block, pooled over height and width
    assert np.array_equal(logits, onnx_logits(session, digits_model.x_test[:5]))


def test_calibration_flags_the_asked_share_of_the_validation_split(digits_model, served):
    from mlops_assets.core.model.onnx_model import onnx_logits_and_features

    calibration = served.ood
    assert calibration is not None and calibration.method == "mahalanobis" and calibration.target_fpr == 0.05
    assert calibration.n_validation == len(digits_model.x_val) and calibration.n_fit == len(digits_model.x_train)
    assert abs(calibration.validation_fpr - 0.05) <= 1.0 / calibration.n_validation
    test_share = calibration.flags(calibration.scores(*onnx_logits_and_features(served.session,
                                                                                digits_model.x_test))).mean()
    assert test_share < 0.15  # held-out digits: about the calibrated rate (BENCHMARKS.md, bench_ood)


def test_noise_and_constant_images_are_flagged_and_a_test_digit_is_not(digits_model, served):
    probabilities, _, answers = served.answer(uniform_noise(200, (1, 8, 8)))
    assert np.mean([a.flagged for a in answers]) >= 0.95  # the bar; the energy score flagged 93-97 %
    assert all(a.reason and "out of distribution" in a.reason for a in answers if a.flagged)
    _, _, answers = served.answer(constant_images(11, (1, 8, 8)))
    assert all(a.flagged for a in answers)
    probabilities, _, answers = served.answer(digits_model.x_test)
    confident = int(np.argmax(probabilities.max(1)))  # the digit the model is surest of
    assert answers[confident].flagged is False and answers[confident].reason is None


def test_a_version_calibrated_on_the_energy_score_is_still_scored_by_it(digits_model, served):
    from dataclasses import replace

    from mlops_assets.core.model.onnx_model import onnx_logits, open_session

    energy = calibrate(onnx_logits(open_session(digits_model.onnx_path), digits_model.x_val), fpr=0.05)
    older = replace(served, ood=calibration_of({"ood": energy.as_metadata()}))
    assert older.ood == energy and not older.ood.needs_features
    _, scores, answers = older.answer(digits_model.x_test[:4])
    assert scores == pytest.approx(energy_scores(onnx_logits(served.session, digits_model.x_test[:4])))


def test_a_version_without_calibration_answers_a_score_and_a_null_flag_with_the_reason(digits_model, served):
    from dataclasses import replace

    legacy = replace(served, metadata={k: v for k, v in served.metadata.items() if k != "ood"}, ood=None)
    assert calibration_of(legacy.metadata) is None
    _, _, answers = legacy.answer(uniform_noise(3, (1, 8, 8)))
    assert all(a.flagged is None and a.reason == UNCALIBRATED and np.isfinite(a.score) for a in answers)


def test_the_calibration_is_stored_with_the_registered_version(digits_model, served, tmp_path):
    from mlops_assets.core.registry.registry import ModelRegistry

    registry = ModelRegistry(tmp_path / "bentoml", "image_classifier")
    registry.register(digits_model.onnx_path, "v1", {}, dict(served.metadata))
    registry.register(digits_model.onnx_path, "v2", {}, {k: v for k, v in served.metadata.items() if k != "ood"})
    assert calibration_of(registry.get("v1").metadata) == served.ood
    assert calibration_of(registry.get("v2").metadata) is None


def test_the_score_and_flag_are_logged_with_each_prediction(digits_model, served, tmp_path):
    from mlops_assets.core.serving.inference_log import read_window
    from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter

    images = np.concatenate([digits_model.x_test[:5], uniform_noise(5, (1, 8, 8))])
    from bentos.service import predict

    with InferenceLogWriter(tmp_path) as log:
        answers = predict(served, images, log)
    rows = read_window(tmp_path, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    assert len(rows) == 10
    assert sorted(rows["ood_score"]) == pytest.approx(sorted(a.ood_score for a in answers))
    assert rows["ood_flagged"].sum() == sum(bool(a.ood_flag) for a in answers)


def _answer_through(path: str, payload) -> tuple[int, dict]:
    """One request through the refusing middleware, in front of an app that answers ``payload`` (in two chunks)."""
    from bentos.ood_refusal import OodRefusal

    async def app(scope, receive, send):
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})

    sent: list[dict] = []

    async def send(event):
        sent.append(event)

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(OodRefusal(app)({"type": "http", "path": path, "method": "POST"}, receive, send))
    return sent[0]["status"], json.loads(b"".join(e.get("body", b"") for e in sent[1:]))


def test_the_refusing_middleware_answers_422_saying_why(digits_model, served):
    _, scores, _ = served.answer(digits_model.x_test)
    typical = digits_model.x_test[[int(np.argmin(scores))]]  # the test digit most like the training data
    _, _, answers = served.answer(np.concatenate([typical, constant_images(2, (1, 8, 8))]))
    predictions = [{"label": 0, "ood_score": a.score, "ood_flag": a.flagged, "ood_reason": a.reason} for a in answers]
    status, body = _answer_through("/classify", predictions)
    assert status == 422 and body["field"] == "images[1]" and "(2 of 3 images are)" in body["error"]
    assert "out of distribution" in body["error"] and "MLOPS_OOD_REFUSE" in body["error"]
    assert not answers[0].flagged
    assert _answer_through("/classify", predictions[:1]) == (200, predictions[:1])


def test_the_served_answers_carry_the_score_and_the_refuse_setting_answers_422(digits_model, served, tmp_path):
    """The real service (``bentoml serve``) with MLOPS_OOD_REFUSE=1: a digit answered with its OOD fields, a
    constant image and a PNG of noise refused with a 422 that says why."""
    import httpx
    from PIL import Image

    from mlops_assets.core.registry.registry import ModelRegistry
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento

    registry = ModelRegistry(tmp_path / "bentoml", "image_classifier")
    registry.register(digits_model.onnx_path, "v1", {}, dict(served.metadata))
    record_release_test_without_a_bento(registry, "v1")  # the registry serves only release-tested versions
    registry.promote("v1", reason="test")
    _, scores, answers = served.answer(digits_model.x_test)
    digit = int(np.argmin(scores))  # the test digit most like the training data
    env = {
        "MLOPS_MODEL_NAME": "image_classifier",
        "MLOPS_FOLLOW_PRODUCTION": "0",
        "MLOPS_SERVICE_WORKERS": "1",
        "MLOPS_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "MLOPS_OOD_REFUSE": "1",
    }
    with serve_bento(SERVICE_TARGET, tmp_path / "bentoml", tmp_path / "server.log", env=env) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            answer = client.post("/classify", json={"images": digits_model.x_test[digit : digit + 1].tolist()})
            assert answer.status_code == 200, answer.text
            [prediction] = answer.json()
            assert prediction["ood_flag"] is False and prediction["ood_score"] == pytest.approx(answers[digit].score)
            refused = client.post("/classify", json={"images": constant_images(1, (1, 8, 8)).tolist()})
            assert refused.status_code == 422 and refused.json()["field"] == "images[0]"
            assert "out of distribution" in refused.json()["error"]
            noise = (uniform_noise(1, (8, 8), seed=3)[0] * 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(noise, "L").save(buffer, "PNG")
            png = client.post("/classify_image", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
            if served.answer(noise[None, None].astype(np.float32) / 255.0)[2][0].flagged:
                assert png.status_code == 422 and "out of distribution" in png.json()["error"], png.text


def test_the_flagged_share_is_counted_per_window(tmp_path):
    """inference_profiles records each window's flagged share as numeric metadata (Dagster plots it over the
    windows); rows of an uncalibrated version (no flag) are not counted as judged."""
    from datetime import timedelta

    import dagster as dg

    from mlops_assets.core.data.features import image_features
    from mlops_assets.core.data.images import load_digits_dataset
    from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
    from mlops_assets.monitor_stage.profiles import inference_profiles
    from testkit.fixtures import make_resources

    resources = make_resources(tmp_path)
    start = datetime(2026, 11, 22, 10, tzinfo=UTC)
    images = load_digits_dataset().images[:40]
    flags = np.array([1.0] * 10 + [0.0] * 20 + [np.nan] * 10)
    ood = np.column_stack([np.linspace(-10, 0, 40), flags])
    root = resources["artifact_store"].root_path
    with InferenceLogWriter(root, clock=lambda: start + timedelta(minutes=5)) as writer:
        assert writer.log(image_features(images), ["0"] * 40, np.full(40, 0.9), "v1", ood=ood)
    result = dg.materialize(
        [inference_profiles],
        partition_key="2026-11-22-10:00",
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    meta = {k: v.value for k, v in result.asset_materializations_for_node("inference_profiles")[0].metadata.items()}
    assert (meta["ood_judged"], meta["ood_flagged"]) == (30, 10)
    assert meta["ood_flagged_share"] == pytest.approx(1 / 3)
