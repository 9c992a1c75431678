"""Monitor stage: accuracy and bias on labelled production traffic, per window and model version.

``production_performance`` is partitioned like the profiles: a window's partition joins the predictions made in
it with the feedback received on them (:mod:`mlops_assets.core.serving.feedback`) and measures each model version that
answered (:mod:`mlops_assets.core.monitoring.performance`). Labels arrive after the predictions, so ``feedback_sensor``
materialises a window again whenever new feedback on it arrives; its figures are numeric metadata, which the
asset's Plots draw over time, and its verdicts a Markdown table. Each measurement's verdicts are also a file
(``reports/performance-<window>-<hash>/performance.json``, written and read only by
:mod:`mlops_assets.core.monitoring.performance`), named by ``report_path``. Its check ``within_thresholds``
(non-blocking) fails on a breach; the person is alerted by ``performance_alert_sensor``, which reads that file,
once per episode.
"""

from datetime import UTC
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.monitoring.output_checks import estimate_beside_measured
from mlops_assets.core.monitoring.profile_layout import window_label, window_version
from mlops_assets.metadata import short_hash
from mlops_assets.monitor_stage.profiles import MONITOR_CODE_VERSION
from mlops_assets.monitor_stage.windows import profile_partitions
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource
from resources.performance_policy import PerformancePolicy

CHECK = "within_thresholds"


def class_names_of(model_registry: ModelRegistryResource, versions: list[str]) -> dict[str, list[str]]:
    """Each version's classes in order, from the registry (a version it does not know: left out)."""
    from mlops_assets.core.registry.registry import RegistryError

    registry, names = model_registry.registry(), {}
    for version in versions:
        try:
            names[version] = [str(c) for c in registry.get(version).metadata.get("class_names") or []]
        except RegistryError:
            continue
    return names


def _breach_names(breaches: dict[str, str]) -> str:
    return ", ".join(kind.replace("_", " ") for kind in breaches)


def verdicts_markdown(results, thresholds) -> str:
    """The verdicts a person reads: one row per model version, each figure beside its threshold, the verdict in
    words and the sentence saying why (a breach's, or why a version was not judged)."""
    return markdown_table(
        ["model version", "predictions", "labelled", f"accuracy (≥ {thresholds.min_accuracy:.2f})",
         "macro precision", "macro recall", f"worst recall gap (≤ {thresholds.max_recall_gap:.2f})", "verdict",
         "reason"],
        [[r.model_version, r.predictions, r.labelled, _figure(r.accuracy), _figure(r.macro_precision),
          _figure(r.macro_recall),
          f"{r.recall_gap:.3f} ('{r.worst_class}' vs '{r.best_class}')" if r.recall_gap is not None else "—",
          f"breach: {_breach_names(r.breaches)}" if r.breaches else "within thresholds" if r.judged else "not judged",
          " ".join(r.breaches.values()) if r.breaches else "—" if r.judged else r.reason] for r in results],
    )


def performance_metadata(results, window: str, predictions: int, labelled: int, feedback_files: int,
                         thresholds, report: Path) -> dict[str, Any]:
    """What the asset page shows: every figure numeric so the Plots draw it per window, the verdicts as a
    Markdown table, and no raw JSON (performance_alert_sensor reads the verdicts file at ``report_path``)."""
    from mlops_assets.core.monitoring.performance import ALL_VERSIONS

    overall = results[-1] if results else None
    breaching = [r for r in results if r.breaches]
    metadata: dict[str, Any] = {
        "window": window,
        "predictions": predictions,
        "labelled": labelled,
        "labelled_share": labelled / predictions if predictions else 0.0,
        "feedback_files": feedback_files,
        "thresholds": thresholds.describe(),
        # short: the sentences are in the table's reason column (a long text cell is cut)
        "status": ("breach: " + "; ".join(f"{r.model_version} {_breach_names(r.breaches)}" for r in breaching)
                   + " (the versions table says why)") if breaching else (
            "within thresholds" if any(r.judged for r in results) else
            "; ".join(r.reason for r in results) or "no prediction in this window"),
        "n_breaches": sum(len(r.breaches) for r in results if r.model_version != ALL_VERSIONS),
        "versions": dg.MetadataValue.md(verdicts_markdown(results, thresholds)),
        "report_path": dg.MetadataValue.path(str(report)),
    }
    if overall is not None and overall.accuracy is not None:
        for name in ("accuracy", "macro_precision", "macro_recall", "recall_gap"):
            value = getattr(overall, name)
            if value is not None:
                metadata[name if name != "recall_gap" else "worst_recall_gap"] = float(value)
        metadata["per_class"] = dg.MetadataValue.md(markdown_table(
            ["class", "precision", "recall", "labelled"],
            [[row["class"], row["precision"], row["recall"], row["support"]] for row in overall.per_class]))
        for row in overall.per_class:
            metadata[f"precision/{row['class']}"] = float(row["precision"])
            metadata[f"recall/{row['class']}"] = float(row["recall"])
    for r in results:
        if r.model_version != ALL_VERSIONS and r.accuracy is not None:
            metadata[f"version/{r.model_version}/labelled"] = r.labelled
            metadata[f"version/{r.model_version}/accuracy"] = float(r.accuracy)
            if r.recall_gap is not None:
                metadata[f"version/{r.model_version}/worst_recall_gap"] = float(r.recall_gap)
    return metadata


def publish_verdicts(artifact_store: ArtifactStore, window_version: str, payload: dict) -> Path:
    """The window's verdicts file under reports/performance-<window>-<content hash>: a window measured again
    (more labels) gets a new file, so each materialization keeps the verdicts it showed."""
    from mlops_assets.core.monitoring.performance import VERDICTS_FILE, write_verdicts

    version = f"performance-{window_version.removeprefix('window-')}-{short_hash(payload)[:8]}"
    return artifact_store.publish("reports", version, lambda d: write_verdicts(d, payload)) / VERDICTS_FILE


def _figure(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "—"


@dg.asset(
    kinds={"pandas"},
    code_version=MONITOR_CODE_VERSION,
    partitions_def=profile_partitions(),
    deps=["registered_model"],  # the model versions it measures, and their classes, come from the registry
    check_specs=[dg.AssetCheckSpec(
        CHECK, asset="production_performance",
        description="Accuracy and recall gap of each model version within the thresholds (performance_policy); "
                    "fails as a warning on a breach, with the sentence a product owner reads.",
    )],
    description=(
        "Per window of served traffic: accuracy, macro and per-class precision/recall and the worst recall gap "
        "of each model version on the predictions that received feedback (true labels), with how many did, and "
        "beside it the accuracy estimated without labels (ATC) on the whole window, so the estimator's error shows. "
        "Materialised again by feedback_sensor as labels arrive; breaches alert a person once per episode."
    ),
)
def production_performance(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStore,
    model_registry: ModelRegistryResource,
    performance_policy: PerformancePolicy,
) -> dg.MaterializeResult:
    from mlops_assets.core.monitoring.performance import ALL_VERSIONS, measure_window, verdicts_payload
    from mlops_assets.core.serving.feedback import FEEDBACK_KIND, labelled_predictions
    from mlops_assets.core.serving.inference_log import window_part_files

    time_window = context.partition_time_window
    start, end = time_window.start.astimezone(UTC), time_window.end.astimezone(UTC)
    window = window_label(window_version(start))
    thresholds = performance_policy.thresholds()
    labelled, per_version = labelled_predictions(artifact_store.root_path, start, end)
    results = measure_window(labelled, per_version, class_names_of(model_registry, list(per_version)),
                             thresholds, window)
    feedback_files = len(window_part_files(artifact_store.root_path, start, end, FEEDBACK_KIND))
    report = publish_verdicts(artifact_store, window_version(start), verdicts_payload(window, results, thresholds))
    metadata = performance_metadata(results, window, sum(per_version.values()), len(labelled), feedback_files,
                                    thresholds, report)
    # the label-free estimate beside the measured accuracy: the estimator's own error, window by window
    metadata.update(estimate_beside_measured(artifact_store.profiles(), window_version(start),
                                             model_registry.registry().production(), metadata.get("accuracy")))
    breaches = [text for r in results if r.model_version != ALL_VERSIONS for text in r.breaches.values()]
    context.log.info(metadata["status"])
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name=CHECK, passed=not breaches, severity=dg.AssetCheckSeverity.WARN,
            metadata={"breaches": dg.MetadataValue.md("\n\n".join(breaches) or "none"), "window": window,
                      "labelled": len(labelled)},
        )],
    )

