"""Build stage 5: the evaluation report on the test split, against the production model too."""


import json
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from mlops_assets.metadata import markdown_table, png_markdown, short_hash
from mlops_assets.ml.artifacts import read_split
from mlops_assets.ml.metrics import classification_report, per_class_markdown
from mlops_assets.ml.onnx_model import predict_labels
from mlops_assets.refs import EvaluationRef, OnnxModelRef, SplitsRef
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource

REPORT_FILE = "report.json"
CONFUSION_PNG = "confusion_matrix.png"
HEADLINE = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "worst_class_recall", "recall_gap")


def compare_with_production(
    registry: ModelRegistryResource, x_test: np.ndarray, y_test: np.ndarray, class_names: list[str],
    candidate: dict[str, Any],
) -> dict[str, Any]:
    """Score the production model on the same test split, so the two numbers are comparable."""
    production = registry.registry().production()
    if production is None:
        return {"status": "no production model yet"}
    if production.metadata.get("class_names") not in (None, class_names):
        return {"status": "not comparable", "production_version": production.version,
                "reason": "production model was trained on different classes"}
    try:
        report = classification_report(y_test, predict_labels(production.onnx_path, x_test), class_names)
    except Exception as exc:  # a production model with another input geometry cannot score this split
        return {"status": "not comparable", "production_version": production.version, "reason": str(exc)}
    return {
        "status": "compared",
        "production_version": production.version,
        "production": {k: report[k] for k in HEADLINE},
        "delta": {k: candidate[k] - report[k] for k in HEADLINE},
    }


@dg.asset(
    group_name="build",
    kinds={"onnx"},
    code_version="1",
    owners=["team:ml-platform"],
    description=(
        "Accuracy, macro precision/recall/F1, per-class metrics, the confusion matrix and the worst "
        "per-class recall gap of the ONNX model on the test split, next to the production model's."
    ),
)
def evaluation_report(
    context: dg.AssetExecutionContext, onnx_model: OnnxModelRef, data_splits: SplitsRef,
    artifact_store: ArtifactStore, model_registry: ModelRegistryResource,
) -> dg.Output[EvaluationRef]:
    from mlops_assets.ml.plots import confusion_matrix_png

    x_test, y_test = read_split(data_splits.path, "test")
    class_names = data_splits.class_names
    report = classification_report(y_test, predict_labels(onnx_model.path, x_test), class_names)
    comparison = compare_with_production(model_registry, x_test, y_test, class_names, report)
    version = short_hash(onnx_model.version, data_splits.version, comparison.get("production_version"))

    def build(directory: Path) -> None:
        payload = {"onnx_version": onnx_model.version, "splits_version": data_splits.version,
                   "metrics": report, "production_comparison": comparison}
        (directory / REPORT_FILE).write_text(json.dumps(payload, indent=2))
        confusion_matrix_png(
            np.asarray(report["confusion_matrix"]), class_names, directory / CONFUSION_PNG,
            f"ONNX {onnx_model.version} on test ({report['n']} images)",
        )

    directory = artifact_store.publish("reports", version, build)
    per_class = {row["class"]: row["recall"] for row in report["per_class"]}
    bias = (
        f"the model favours class {report['best_class']} (recall {per_class[report['best_class']]:.3f}) "
        f"over class {report['worst_class']} (recall {report['worst_class_recall']:.3f}): "
        f"gap {report['recall_gap']:.3f}"
    )
    context.log.info(f"test accuracy {report['accuracy']:.4f}; {bias}")
    headline_rows = [[k, report[k]] for k in HEADLINE]
    if comparison["status"] == "compared":
        headline_rows = [
            [k, report[k], comparison["production"][k], comparison["delta"][k]] for k in HEADLINE
        ]
        table = markdown_table(["metric", "candidate", f"production {comparison['production_version']}",
                                "Δ"], headline_rows)
    else:
        table = markdown_table(["metric", "candidate"], headline_rows) + f"\n\nProduction: {comparison['status']}"
    return dg.Output(
        EvaluationRef(
            version=version,
            path=str(directory),
            onnx_version=onnx_model.version,
            splits_version=data_splits.version,
            metrics={k: v for k, v in report.items() if k != "confusion_matrix"},
            production_comparison=comparison,
        ),
        data_version=dg.DataVersion(version),
        metadata={
            **{k: float(report[k]) for k in HEADLINE},
            "n_test": report["n"],
            "worst_class": report["worst_class"],
            "bias_signal": bias,
            "metrics": dg.MetadataValue.md(table),
            "per_class": dg.MetadataValue.md(per_class_markdown(report)),
            "confusion_matrix": png_markdown(directory / CONFUSION_PNG, "confusion matrix"),
            "report_path": dg.MetadataValue.path(str(directory / REPORT_FILE)),
            "onnx_version": onnx_model.version,
            "splits_version": data_splits.version,
            "production_comparison": dg.MetadataValue.json(comparison),
        },
    )
