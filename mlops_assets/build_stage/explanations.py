"""Build stage 5b: explanations in the evaluation report, and the check that decides whether they may be shown.

The evaluation report calls :func:`explain_test_split`: per class, the mean occlusion map of the test images the
model assigns to it; the 8 most confident mistakes with their maps; and the fidelity and sanity checks of
:mod:`mlops_assets.core.model.explain` on a seeded sample of the test split. ``explanations_are_faithful`` turns
that result into an asset check a person sees on the report; the registry stores it with the version, and the
service shows explanations only for a version whose check passed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlops_assets.metadata import png_markdown
from mlops_assets.refs import EvaluationRef

if TYPE_CHECKING:
    import numpy as np

    from mlops_assets.core.data.pixel_store import ImageRows

EXPLANATIONS_FILE = "explanations.json"
CLASS_MAPS_PNG = "explanations_per_class.png"
MISTAKES_PNG = "explanations_mistakes.png"
SAMPLE_ROWS = 300  # images the checks run on: every image of a digits test split, a seeded sample of a larger one
MISTAKES = 8


def explain_test_split(onnx_path: str | Path, rows: ImageRows, class_names: list[str], directory: Path,
                       probabilities: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Write the report's explanation figures and ``explanations.json`` into ``directory``; returns the JSON.

    ``probabilities`` (N×K) are the evaluation's own scores of ``rows`` (:func:`~mlops_assets.core.model.onnx_model.
    score_rows`): the mistakes shown are the ones the report counts, and the split is not scored a second time.
    Only the sample and the mistakes are read as floats, so memory does not grow with the split."""
    import numpy as np

    from mlops_assets.core.model import explain
    from mlops_assets.core.model.plots import attribution_grid_png

    model_bytes = Path(onnx_path).read_bytes()
    n = len(rows)
    sample = np.sort(np.random.default_rng(seed).permutation(n)[:SAMPLE_ROWS])
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    sampled = rows.training_images(sample)
    labels = np.asarray(rows.labels)
    check, explanations = explain.check_explanations(model_bytes, sampled, seed)
    class_maps, class_titles, examples = [], [], []
    for index, name in enumerate(class_names):
        members = [i for i, e in enumerate(explanations) if e.target == index]
        if members:
            class_maps.append(np.mean([explanations[i].attribution for i in members], axis=0))
            class_titles.append(f"{name} (n={len(members)})")
            examples.append(members[0])
    attribution_grid_png(sampled[examples], class_maps, class_titles, directory / CLASS_MAPS_PNG,
                         "mean occlusion map per predicted class (image: one example)")
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISTAKES]
    worst_images = rows.training_images(worst)
    predict = explain.onnx_predict(model_bytes)
    mistakes = [explain.occlusion(predict, image, int(predicted[i])) for image, i in zip(worst_images, worst,
                                                                                          strict=True)]
    titles = [f"{class_names[labels[i]]} → {class_names[predicted[i]]} p={confidence[i]:.2f}" for i in worst]
    if len(worst):
        attribution_grid_png(worst_images, [m.attribution for m in mistakes], titles, directory / MISTAKES_PNG,
                             f"the {len(worst)} most confident mistakes on the test split, with their maps")
    payload = {**check.as_dict(), "sample_rows": int(len(sample)), "test_rows": int(n),
               "mistakes": [{"row": int(i), "true": class_names[labels[i]], "predicted": class_names[predicted[i]],
                             "confidence": round(float(confidence[i]), 4)} for i in worst]}
    (directory / EXPLANATIONS_FILE).write_text(json.dumps(payload, indent=2))
    return payload


def explanation_metadata(directory: Path) -> dict[str, Any]:
    """The report's explanation figures as metadata (inline images)."""
    metadata: dict[str, Any] = {"explanations_per_class": png_markdown(directory / CLASS_MAPS_PNG,
                                                                       "mean attribution map per class")}
    if (directory / MISTAKES_PNG).exists():
        metadata["explanations_of_mistakes"] = png_markdown(directory / MISTAKES_PNG, "most confident mistakes")
    return metadata


@dg.asset_check(
    asset="evaluation_report",
    description=(
        "The occlusion maps explain this model: deleting the 10 % most-attributed pixels lowers the explained "
        "class's probability ≥ 2× more than deleting a random 10 % (fidelity), and the same "
        "architecture with random weights gets maps with Spearman < 0.5 to these (sanity). A version that fails "
        "is served without explanations."
    ),
)
def explanations_are_faithful(evaluation_report: EvaluationRef) -> dg.AssetCheckResult:
    result = json.loads((Path(evaluation_report.path) / EXPLANATIONS_FILE).read_text())
    fidelity = result["fidelity"]
    return dg.AssetCheckResult(
        passed=bool(result["passed"]),
        severity=dg.AssetCheckSeverity.WARN,
        description=result["reason"],
        metadata={"top_drop": fidelity["top_drop"], "random_drop": fidelity["random_drop"],
                  "ratio": fidelity["ratio"],
                  "sanity_spearman": result["sanity_spearman"], "images": fidelity["n_images"],
                  "method": result["method"]},
    )
