"""One window's drift verdict, as the UI shows it: judged once (``core/monitoring/window_judgement.py``), recorded
as ``drift_report``'s materialization for that window (by the drift sensor as it judges, or by materialising the
partition), with its figures as numeric metadata so the asset's Plots draw drift per window over time, and its
report files versioned by window and reference (a window judged again against a new reference gets a new record,
never an overwrite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.core.monitoring.profile_layout import window_label
from mlops_assets.metadata import short_hash
from mlops_assets.monitor_stage.windows import partition_key
from resources.artifact_store import ArtifactStore


def publish_report(artifact_store: ArtifactStore, verdict, window: str, reference: str, reference_view,
                   html: bool) -> Path:
    """drift.md, drift.json and (when ``html``) whylogs' HTML report, under reports/<window, reference>.

    whylogs renders its HTML report in about a second, fifty times the cost of judging the window, so the
    sensor writes it for drifted windows only; materialising a window's partition always writes it."""
    from mlops_assets.core.monitoring.drift import write_html_report

    version = f"drift-{window.removeprefix('window-')}-{short_hash(reference, vars(verdict.thresholds))[:8]}"

    def build(directory: Path) -> None:
        (directory / "drift.md").write_text(f"# Drift: {verdict.reason}\n\n{verdict.markdown()}\n")
        (directory / "drift.json").write_text(
            json.dumps({**verdict.as_dict(), "window_version": window, "reference": reference}, indent=2, default=str)
        )
        if html and verdict.enough_data:
            write_html_report(artifact_store.profiles().read(window), reference_view, directory / "drift.html")

    return artifact_store.publish("reports", version, build)


def verdict_metadata(verdict, window: str, reference: str, report: Path) -> dict[str, Any]:
    """What the asset page shows for one window; every figure numeric, so it is plotted over time."""
    metadata: dict[str, Any] = {
        "window": window_label(window),
        "reason": dg.MetadataValue.md(verdict.reason),  # long: Markdown wraps where a text cell is cut
        "drift_share": float(verdict.drift_share),
        # the alarm line as its own series, so the asset's Plots draw drift share against it window by window
        "drift_share_threshold": float(verdict.thresholds.drift_share),
        "is_drift": bool(verdict.is_drift),
        "enough_data": bool(verdict.enough_data),
        "n_rows": int(verdict.n_rows),
        "n_drifted_features": len(verdict.drifted_features),
        "reference": reference,
        "thresholds": verdict.thresholds.describe(),
        "features": dg.MetadataValue.md(verdict.markdown() if verdict.features else verdict.reason),
        "report_path": dg.MetadataValue.path(str(report)),
    }
    for feature in verdict.features:
        if feature.distance is not None:
            metadata[f"hellinger/{feature.column}"] = float(feature.distance)
        if feature.p_value is not None:
            metadata[f"p_value/{feature.column}"] = float(feature.p_value)
    html = report / "drift.html"
    if html.is_file():  # a path to open on the host: a browser refuses file:// links from the UI's page
        metadata["html_report"] = dg.MetadataValue.path(str(html))
    elif verdict.enough_data:
        metadata["html_report"] = "written for drifted windows; materialise this partition to write it"
    return metadata


def record_verdict(artifact_store: ArtifactStore, verdict, window: str, reference: str,
                   reference_view, extra_metadata: dict[str, Any] | None = None) -> dg.AssetMaterialization:
    """The verdict as drift_report's materialization of the window's partition (what the sensor emits);
    ``extra_metadata``: the output-only verdict and the retraining decision (``monitor/output_checks.py``)."""
    report = publish_report(artifact_store, verdict, window, reference, reference_view, html=verdict.is_drift)
    metadata = {**verdict_metadata(verdict, window, reference, report), **(extra_metadata or {})}
    return dg.AssetMaterialization(
        asset_key="drift_report", partition=partition_key(window),
        description=str(metadata.get("decision", verdict.reason)), metadata=metadata,
    )
