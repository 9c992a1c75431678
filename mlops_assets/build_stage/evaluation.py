"""Build stage 5: the evaluation report on the test split, against the production model too."""


import json
from collections import Counter
from pathlib import Path

import dagster as dg

from mlops_assets.build_stage.explanations import (
    EXPLANATIONS_FILE,
    explain_test_split,
    explanation_metadata,
)
from mlops_assets.build_stage.validation import current_label_ledger
from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.data.artifacts import open_split, read_split_hashes
from mlops_assets.core.data.pixel_store import ImageRows
from mlops_assets.core.data.splits import SPLIT_NAMES
from mlops_assets.core.model import explain
from mlops_assets.core.model.metrics import classification_report, per_class_markdown
from mlops_assets.core.model.onnx_model import predict_rows, score_rows
from mlops_assets.core.model.signature import signature_differences
from mlops_assets.core.quality.label_integrity import label_map
from mlops_assets.core.registry.promotion import (
    COMPARED,
    INCOMPATIBLE,
    NO_PRODUCTION,
    NOT_COMPARABLE,
    ChampionComparison,
)
from mlops_assets.metadata import png_markdown, short_hash
from mlops_assets.refs import EvaluationRef, OnnxModelRef, SplitsRef
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource

REPORT_FILE = "report.json"
CONFUSION_PNG = "confusion_matrix.png"
HEADLINE = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "worst_class_recall", "recall_gap")


def production_trained_hashes(
    artifact_store: ArtifactStore, production_splits_version: str | None
) -> set[str] | None:
    """Content hashes of the images production was trained and selected on (train + val), or None
    when its split is not in this artifact store (then the overlap cannot be checked)."""
    if not production_splits_version or not artifact_store.exists("splits", production_splits_version):
        return None
    return read_split_hashes(artifact_store.path("splits", production_splits_version), ("train", "val"))


def production_labels(
    artifact_store: ArtifactStore, production_splits_version: str | None, class_names: list[str]
) -> dict[str, str] | None:
    """content hash → class name of every image in production's split (train, val and test): the labels it was
    trained and tested against; None when that split is not in this artifact store."""
    if not production_splits_version or not artifact_store.exists("splits", production_splits_version):
        return None
    directory = artifact_store.path("splits", production_splits_version)
    labels: dict[str, str] = {}
    for name in SPLIT_NAMES:
        split = open_split(directory, name)
        labels.update(label_map(split.hash_list(), split.labels, class_names))
    return labels


def relabelled_rows(rows: ImageRows, class_names: list[str], before: dict[str, str] | None) -> Counter:
    """"from → to" → rows whose label differs from the one production's split gave the same image."""
    if not before:
        return Counter()
    return Counter(
        f"{before[digest]} → {class_names[int(label)]}"
        for digest, label in zip(rows.hash_list(), rows.labels, strict=True)
        if digest in before and before[digest] != class_names[int(label)]
    )


def compare_with_production(
    registry: ModelRegistryResource, artifact_store: ArtifactStore, test: ImageRows, data_splits: SplitsRef,
    candidate_onnx: str,
) -> ChampionComparison:
    """Score the candidate and production on the same rows: this test split less production's training images.

    Rows whose label differs from the one production's split gave the same image are counted (from → to): on
    them production is scored against labels it never saw. The label ledger's relabellings accepted since
    production's dataset are attached, so the gate can tell an accepted relabelling from an unnoticed one."""
    import numpy as np

    production = registry.registry().production()
    if production is None:
        return ChampionComparison(NO_PRODUCTION)
    stored = {k: float(v) for k, v in production.metadata.get("metrics", {}).items() if k in HEADLINE}
    candidate_metadata = {"class_names": data_splits.class_names, "spec": data_splits.spec}
    differences = signature_differences(production.metadata, candidate_metadata)
    if differences:
        return ChampionComparison(INCOMPATIBLE, production.version, data_splits.version, n_test=len(test),
                                  production_stored=stored, reason="; ".join(differences))
    trained = production_trained_hashes(artifact_store, production.labels.get("splits_version"))
    keep = np.ones(len(test), dtype=bool)
    note = ""
    if trained is None:
        note = f"production's training split {production.labels.get('splits_version')} is not in the artifact " \
               "store: overlap with its training images and labels changed since unchecked"
    else:
        keep = np.asarray([digest not in trained for digest in test.hash_list()], dtype=bool)
    shared = test.select(keep)
    base = dict(production_version=production.version, splits_version=data_splits.version, n=int(keep.sum()),
                n_test=len(test), excluded=int((~keep).sum()), production_stored=stored)
    moves = relabelled_rows(shared, data_splits.class_names,
                            production_labels(artifact_store, production.labels.get("splits_version"),
                                              data_splits.class_names))  # the same names: signatures matched
    if moves:
        accepted = current_label_ledger(artifact_store)[1].acceptances_since(production.labels.get("dataset_version"))
        base.update(relabelled=sum(moves.values()), relabelled_transitions=dict(moves.most_common()),
                    relabel_accepted="; ".join(entry["accepted_reason"] for entry in accepted))
    if len(shared) == 0:
        return ChampionComparison(COMPARED, **base, reason=note or "no test image left")
    try:
        champion = classification_report(shared.labels, predict_rows(production.onnx_path, shared),
                                         data_splits.class_names)
    except Exception as exc:  # noqa: BLE001 - a production model that cannot score this split is reported
        return ChampionComparison(NOT_COMPARABLE, **base, reason=f"{type(exc).__name__}: {exc}")
    challenger = classification_report(shared.labels, predict_rows(candidate_onnx, shared), data_splits.class_names)
    return ChampionComparison(
        COMPARED, **base, reason=note,
        candidate={k: float(challenger[k]) for k in HEADLINE},
        production={k: float(champion[k]) for k in HEADLINE},
    )


def comparison_markdown(comparison: ChampionComparison) -> str:
    """The champion-vs-challenger table a person reads before trusting the gate."""
    if comparison.status != COMPARED or not comparison.candidate:
        return f"**Production {comparison.production_version or ''}: {comparison.status}.** {comparison.reason}"
    rows = [
        [k, comparison.candidate[k], comparison.production[k], comparison.candidate[k] - comparison.production[k],
         comparison.production_stored.get(k, "—")]
        for k in HEADLINE
    ]
    heading = (
        f"**Same rows**: {comparison.n} of {comparison.n_test} test images of split {comparison.splits_version} "
        f"({comparison.excluded} that production {comparison.production_version} trained on excluded)."
        + (f" {comparison.reason}" if comparison.reason else "")
        + (f" **{comparison.relabel_text()}**; " + (f"relabelling accepted: {comparison.relabel_accepted}."
                                                   if comparison.relabel_accepted else "not accepted.")
           if comparison.relabelled else "")
    )
    columns = ["metric", "candidate", f"production {comparison.production_version}", "Δ",
               "production at registration (own split, context only)"]
    return heading + "\n\n" + markdown_table(columns, rows)


@dg.asset(
    kinds={"onnx"},
    code_version="3",  # 3: explanations (per-class maps, mistakes, fidelity and sanity checks)
    description=(
        "Accuracy, macro precision/recall/F1, per-class metrics, the confusion matrix and the worst "
        "per-class recall gap of the ONNX model on the test split, next to the production model's."
    ),
)
def evaluation_report(
    context: dg.AssetExecutionContext, onnx_model: OnnxModelRef, data_splits: SplitsRef,
    artifact_store: ArtifactStore, model_registry: ModelRegistryResource,
) -> dg.MaterializeResult[EvaluationRef]:
    import numpy as np

    from mlops_assets.core.model.plots import confusion_matrix_png

    test = open_split(data_splits.path, "test")
    class_names = data_splits.class_names
    probabilities = score_rows(onnx_model.path, test)  # once: the report's figures and its explanations
    report = classification_report(test.labels, probabilities.argmax(1), class_names)
    comparison = compare_with_production(model_registry, artifact_store, test, data_splits, onnx_model.path)
    version = short_hash(onnx_model.version, data_splits.version, comparison.production_version)

    explanations: dict = {}

    def build(directory: Path) -> None:
        payload = {"onnx_version": onnx_model.version, "splits_version": data_splits.version,
                   "metrics": report, "production_comparison": comparison.as_dict()}
        (directory / REPORT_FILE).write_text(json.dumps(payload, indent=2))
        confusion_matrix_png(
            np.asarray(report["confusion_matrix"]), class_names, directory / CONFUSION_PNG,
            f"ONNX {onnx_model.version} on test ({report['n']} images)",
        )
        explanations.update(explain_test_split(onnx_model.path, test, class_names, directory, probabilities))

    directory = artifact_store.publish("reports", version, build)
    if not explanations:  # the report existed already (same model, splits and production): read what it holds
        explanations.update(json.loads((directory / EXPLANATIONS_FILE).read_text()))
    # in words: its figures are the plotted entries worst_class_recall and recall_gap, and the per-class table
    if report["recall_gap"] > 0:
        bias = f"the model favours class {report['best_class']} over class {report['worst_class']}"
    else:
        bias = "every class has the same recall: no gap"
    context.log.info(f"test accuracy {report['accuracy']:.4f}; {bias} (worst class recall "
                     f"{report['worst_class_recall']:.3f}, gap {report['recall_gap']:.3f})")
    # each figure once: the headline figures are their own (plotted) entries, the table adds only the same-rows
    # comparison with production; the comparison's figures for a program are the value's and report.json's
    table = comparison_markdown(comparison)
    return dg.MaterializeResult(
        value=EvaluationRef(
            version=version,
            path=str(directory),
            onnx_version=onnx_model.version,
            splits_version=data_splits.version,
            metrics={k: v for k, v in report.items() if k != "confusion_matrix"},
            explanations=explain.stored_verdict(explanations),
            production_comparison=comparison.as_dict(),
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
            **explanation_metadata(directory),
            "explanations_shown": bool(explanations["passed"]),
            "report_path": dg.MetadataValue.path(str(directory / REPORT_FILE)),
            "onnx_version": onnx_model.version,
            "splits_version": data_splits.version,
            "compared_rows": comparison.n,
        },
    )
