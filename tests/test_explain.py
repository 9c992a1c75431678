"""Explanations (issue 39): occlusion maps, the deletion test that proves them, the sanity check, and the
evaluation report that carries them."""

from pathlib import Path

import numpy as np
import pytest

from mlops_assets.core.model import explain


def one_pixel_model(row: int, col: int):
    """A two-class "model" that looks at one pixel only: p(class 1) = sigmoid(10 · (x[row, col] − 0.5))."""
    def predict(batch: np.ndarray) -> np.ndarray:
        p1 = 1 / (1 + np.exp(-10 * (batch[:, 0, row, col] - 0.5)))
        return np.stack([1 - p1, p1], axis=1)
    return predict


def test_occlusion_puts_the_whole_decision_on_the_one_pixel_the_model_reads():
    image = np.zeros((1, 8, 8), dtype=np.float32)
    image[0, 3, 5] = 1.0
    predict = one_pixel_model(3, 5)
    result = explain.occlusion(predict, image)
    p0 = 1 / (1 + np.exp(-5.0))
    p_occluded = 1 / (1 + np.exp(5.0))
    assert result.target == 1 and result.probability == pytest.approx(p0, rel=1e-6)
    # every 2×2 patch covering (3, 5) blanks it: its mean drop is exactly p0 − p(blank)
    assert result.attribution[3, 5] == pytest.approx(p0 - p_occluded, rel=1e-5)
    assert np.unravel_index(result.attribution.argmax(), (8, 8)) == (3, 5)
    # (3, 4) shares two of the four patches of (3, 5): half the drop; a far pixel none
    assert result.attribution[3, 4] == pytest.approx((p0 - p_occluded) / 2, rel=1e-5)
    assert result.attribution[0, 0] == 0


def test_the_occlusion_window_scales_with_the_image():
    assert explain.occlusion_window(8, 8) == (2, 1)
    assert explain.occlusion_window(32, 32) == (4, 2)
    explanation = explain.occlusion(lambda b: np.tile([0.2, 0.8], (len(b), 1)), np.ones((3, 32, 20), np.float32))
    assert explanation.attribution.shape == (32, 20)


def test_the_sanity_check_fails_a_method_that_ignores_the_model():
    """The edge-detector failure Adebayo et al. found: maps that are the image itself are the same whatever the
    weights, so their rank correlation with a random model's maps is 1, far above 0.5."""
    images = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    assert explain.mean_rank_correlation(list(images), list(images)) == pytest.approx(1.0)
    assert not explain.ExplanationCheck(explain.FidelityResult(5, 0.5, 0.1, 5.0, True), 1.0).passed


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The project's CNN trained on the digits for a few epochs (seconds), exported to ONNX; and test images."""
    import torch

    from mlops_assets.core.data.images import load_digits_dataset, to_training_scale
    from mlops_assets.core.model.onnx_model import export_onnx
    from mlops_assets.core.model.train import ModelConfig, build_model

    digits = load_digits_dataset()
    x = to_training_scale(digits.images).reshape(-1, 1, 8, 8)
    y = np.array([int(label) for label in digits.labels])
    torch.manual_seed(0)
    model = build_model(ModelConfig(in_channels=1, n_classes=10, height=8, width=8))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs, targets = torch.from_numpy(x[:1400]), torch.from_numpy(y[:1400])
    for _ in range(12):
        for order in torch.randperm(len(inputs)).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs[order]), targets[order]).backward()
            optimiser.step()
    model.eval()
    path = tmp_path_factory.mktemp("cnn") / "model.onnx"
    export_onnx(model, x[:2], path)
    return path, x[1400:1550]


@pytest.mark.slow
def test_the_deletion_test_passes_the_models_own_maps_and_fails_maps_of_random_weights(trained_cnn):
    path, images = trained_cnn
    raw = path.read_bytes()
    predict = explain.onnx_predict(raw)
    own = [explain.occlusion(predict, image) for image in images]
    assert explain.fidelity(predict, images, own).passed
    for seed in (1, 2, 3):
        random_predict = explain.onnx_predict(explain.randomized_onnx(raw, seed))
        foreign = [explain.Explanation(e.target, e.probability, explain.occlusion(random_predict, image,
                                                                                  e.target).attribution)
                   for image, e in zip(images, own, strict=True)]
        result = explain.fidelity(predict, images, foreign)
        assert not result.passed, (seed, result)


@pytest.mark.slow
def test_the_trained_models_maps_pass_both_checks(trained_cnn):
    path, images = trained_cnn
    check, explanations = explain.check_explanations(path.read_bytes(), images)
    assert check.passed, check.reason()
    assert check.sanity_spearman < explain.SANITY_MAX_SPEARMAN
    assert len(explanations) == len(images) and explanations[0].attribution.shape == (8, 8)


def test_the_heatmap_is_a_png_of_the_image_scaled_up():
    from io import BytesIO

    from PIL import Image

    attribution = np.zeros((8, 8), np.float32)
    attribution[2, 2], attribution[5, 5] = 1.0, -0.5
    png = explain.heatmap_png(np.zeros((1, 8, 8), np.float32), attribution, scale=4)
    picture = Image.open(BytesIO(png)).convert("RGB")
    assert picture.size == (32, 32)
    red, blue = picture.getpixel((2 * 4, 2 * 4)), picture.getpixel((5 * 4, 5 * 4))
    assert red[0] > red[2] and blue[2] > blue[0]


def test_the_service_explains_only_a_version_whose_stored_check_passed():
    """The registry keeps the explanation check's verdict with the version (registration); the rule that reads it
    names the version and says why, in words a caller of /explain can act on."""
    passed = {"explanations": {"passed": True, "method": "occlusion", "reason": "deletion test: ... (5.00×)"}}
    assert explain.refusal(passed, "v7") is None
    failed = {"explanations": {"passed": False, "method": "occlusion",
                               "reason": "deletion test: top 10% lowers p by 0.1 vs 0.1 random (1.00×, needs ≥ 2×)"}}
    assert explain.refusal(failed, "v7") == (
        "explanations for version v7 did not pass their fidelity/sanity check: deletion test: top 10% lowers p by "
        "0.1 vs 0.1 random (1.00×, needs ≥ 2×)")
    unchecked = explain.refusal({"metrics": {}}, "v7")
    assert unchecked.startswith("explanations for version v7 were never checked") and "evaluation_report" in unchecked
    other_method = explain.refusal({"explanations": {**passed["explanations"], "method": "integrated_gradients"}},
                                   "v7")
    assert "checked integrated_gradients, not occlusion" in other_method
    assert explain.stored_verdict({**failed["explanations"], "fidelity": {}, "sanity_spearman": 0.1}) == \
        failed["explanations"]


def test_the_report_explains_the_evaluations_predictions_without_scoring_the_split_again(trained_cnn, tmp_path):
    """explain_test_split takes the probabilities the evaluation computed: its mistakes are those rows, ranked by
    that confidence (here three rows the evaluation got confidently wrong, by construction)."""
    from mlops_assets.build_stage.explanations import EXPLANATIONS_FILE, explain_test_split
    from mlops_assets.core.data.images import load_digits_dataset
    from mlops_assets.core.data.pixel_store import ImageRows

    path, _ = trained_cnn
    digits = load_digits_dataset()
    rows = ImageRows.from_arrays(digits.images[1400:1460], digits.labels[1400:1460])
    labels = np.asarray(rows.labels)
    probabilities = np.full((len(rows), 10), 0.01, np.float32)
    probabilities[np.arange(len(rows)), labels] = 0.91  # right everywhere ...
    for row, confidence in ((5, 0.97), (40, 0.99), (12, 0.95)):  # ... but on three rows
        probabilities[row] = (1 - confidence) / 9
        probabilities[row, (labels[row] + 1) % 10] = confidence
    payload = explain_test_split(path, rows, digits.class_names, tmp_path, probabilities)
    assert [m["row"] for m in payload["mistakes"]] == [40, 5, 12]
    assert [m["predicted"] for m in payload["mistakes"]] == [str((labels[r] + 1) % 10) for r in (40, 5, 12)]
    assert [m["confidence"] for m in payload["mistakes"]] == [0.99, 0.97, 0.95]
    assert payload["sample_rows"] == payload["fidelity"]["n_images"] == 60
    assert (tmp_path / EXPLANATIONS_FILE).is_file() and (tmp_path / "explanations_mistakes.png").is_file()
