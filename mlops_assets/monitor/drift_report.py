"""Monitor stage: how far served traffic has drifted from the production model's training data, as a report."""

import json
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.metadata import short_hash
from mlops_assets.ml.markdown import markdown_table
from mlops_assets.ml.profile_layout import WINDOW_PREFIX, reference_version, window_label
from mlops_assets.monitor.profiles import MONITOR_CODE_VERSION, MonitorError, production_model_version
from resources.artifact_store import ArtifactStore
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource


class DriftReportConfig(dg.Config):
    windows: int = Field(default=24, description="How many of the latest window profiles to merge and compare.")


@dg.asset(
    kinds={"whylogs"},
    code_version=MONITOR_CODE_VERSION,
    deps=["reference_profile", "inference_profiles"],
    description=(
        "Per-feature drift (KS and Hellinger from the sketches, chi-square for the predicted class) of "
        "the latest windows, merged, against the reference profile: drift share, categories, a Markdown "
        "table, and whylogs' HTML drift report."
    ),
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftReportConfig,
    artifact_store: ArtifactStore,
    model_registry: ModelRegistryResource,
    drift_policy: DriftPolicy,
) -> dg.MaterializeResult:
    from mlops_assets.ml.drift import evaluate_drift, merge_profiles, write_html_report

    thresholds = drift_policy.thresholds()
    profiles = artifact_store.profiles()
    model_version = production_model_version(model_registry)
    if model_version is None:
        raise MonitorError("no production model: materialise registered_model (build_job) first")
    ref_version = reference_version(model_version)
    if not profiles.exists(ref_version):
        raise MonitorError(f"no reference profile for production model {model_version}: materialise reference_profile")
    reference = profiles.read(ref_version)
    windows = profiles.windows()[-config.windows:]
    if not windows:
        raise MonitorError("no inference profiles yet: materialise inference_profiles for a window with traffic")
    views = [profiles.read(w) for w in windows]
    label = window_label(windows[0]) + ("" if len(windows) == 1 else f"…{window_label(windows[-1])}")
    verdict = evaluate_drift(merge_profiles(views), reference, label, thresholds)
    per_window = [
        evaluate_drift(v, reference, window_label(w), thresholds) for w, v in zip(windows, views, strict=True)
    ]
    content = short_hash(windows, ref_version, vars(thresholds))[:8]
    version = f"drift-{windows[-1].removeprefix(WINDOW_PREFIX)}-{content}"

    def build(directory: Path) -> None:
        (directory / "drift.md").write_text(f"# Drift: {verdict.reason}\n\n{verdict.markdown()}\n")
        (directory / "drift.json").write_text(json.dumps(
            {**verdict.as_dict(), "windows": windows, "reference": ref_version,
             "per_window": [v.as_dict() for v in per_window]}, indent=2, default=str))
        write_html_report(merge_profiles(views), reference, directory / "drift.html")

    directory = artifact_store.publish("reports", version, build)
    html = directory / "drift.html"
    context.log.info(verdict.reason)
    window_rows = [
        [v.window, v.n_rows, v.drift_share, "yes" if v.is_drift else "no" if v.enough_data else "too few rows"]
        for v in per_window[-24:]
    ]
    return dg.MaterializeResult(
        metadata={
            "reason": verdict.reason,
            "drift_share": float(verdict.drift_share),
            "is_drift": verdict.is_drift,
            "enough_data": verdict.enough_data,
            "n_rows": verdict.n_rows,
            "reference": ref_version,
            "windows": label,
            "thresholds": thresholds.describe(),
            "drift_scores": dg.MetadataValue.md(verdict.markdown() if verdict.features else verdict.reason),
            "per_window": dg.MetadataValue.md(markdown_table(["window", "rows", "drift share", "drift"], window_rows)),
            "html_report": dg.MetadataValue.path(str(html)),
            "html_report_url": dg.MetadataValue.url(html.as_uri()),
            "report_path": dg.MetadataValue.path(str(directory)),
        }
    )
