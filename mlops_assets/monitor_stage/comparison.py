"""Monitor stage: the live comparison of production and its challenger (the shadow) on the same requests, per window.

``live_comparison`` is partitioned like the profiles and ``production_performance``: a window's partition joins the
served answers (``inference_log``) with the shadow's answers to the same requests (``shadow_log``) and their labels,
and measures them (:mod:`mlops_assets.core.monitoring.live_comparison`: what each figure means, the test and its
error rates). Labels arrive later, so ``feedback_sensor`` materialises a window again when labels arrive on a window
a shadow scored. Every figure is numeric metadata (the Plots draw it over windows); the confusion between the two
versions and the accuracies with their intervals and the verdict are Markdown tables; the plot over the windows
published so far is an image. The payload is a file, ``reports/comparison-<window>-<hash>/comparison.json`` (written
once, like the performance verdicts), named by ``report_path``: what another process (a promotion sensor) reads.
A window without a shadow's answer materialises with the status "no challenger in this window".
"""

import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.monitoring.profile_layout import window_label, window_version
from mlops_assets.metadata import png_markdown, short_hash
from mlops_assets.monitor_stage.profiles import MONITOR_CODE_VERSION
from mlops_assets.monitor_stage.windows import profile_partitions
from resources.artifact_store import ArtifactStore
from resources.performance_policy import PerformancePolicy

REPORT_PREFIX = "comparison-"
PLOT_FILE = "comparison_over_windows.png"
PLOTTED_WINDOWS = 48  # the newest windows drawn in the plot
VERDICT_CODES = {"better": 1, "not enough evidence": 0, "worse": -1}  # the verdict as a number, for the Plots


def _figure(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(ci: list[float] | None) -> str:
    return "—" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def versions_markdown(payload: dict[str, Any]) -> str:
    """One row per pair of versions compared: each one's accuracy on the same labelled requests with its 95 %
    interval, the discordant pairs, the p-value and the verdict with its reason."""
    rows = []
    for pair in payload["pairs"]:
        rows.append([
            f"{pair['production_version']} → {pair['challenger_version']}", pair["compared"],
            _figure(pair["agreement"]), pair["labelled_pairs"],
            f"{_figure(pair['production_accuracy'])} {_interval(pair['production_ci'])}",
            f"{_figure(pair['challenger_accuracy'])} {_interval(pair['challenger_ci'])}",
            f"{pair['production_only_right']} / {pair['challenger_only_right']}",
            _figure(pair["p_value"], 4), pair["verdict"], pair["reason"]])
    return markdown_table(
        ["production → challenger", "compared", "agreement", "labelled pairs", "production accuracy (95 % CI)",
         "challenger accuracy (95 % CI)", "only production / only challenger right",
         f"McNemar exact p (alpha {payload['alpha']:g})", "verdict", "reason"], rows)


def confusion_markdown(pair: dict[str, Any]) -> str:
    """The headline pair's answers against each other: production's class (rows) × the challenger's (columns)."""
    classes = pair["classes"]
    return markdown_table([f"{pair['production_version']} \\ {pair['challenger_version']}", *classes],
                          [[name, *row] for name, row in zip(classes, pair["confusion"], strict=True)])


def comparison_metadata(payload: dict[str, Any], report: Path, plot: Path) -> dict[str, Any]:
    """What the asset page shows: every figure a number (so the Plots draw it per window), the tables, the file
    and the plot over windows."""
    metadata: dict[str, Any] = {
        "window": payload["window"],
        "status": payload["status"],
        "verdict": payload["verdict"],
        "verdict_code": VERDICT_CODES[payload["verdict"]],
        "production_version": payload["production_version"] or "none",
        "challenger_version": payload["challenger_version"] or "none",
        "answered": payload["answered"],
        "compared": payload["compared"],
        "share_mirrored": float(payload["share_mirrored"]),
        "labelled_pairs": payload["labelled_pairs"],
        "alpha": float(payload["alpha"]),
        "test": payload["test"],
        "report_path": dg.MetadataValue.path(str(report)),
        "over_windows": png_markdown(plot, "agreement and accuracies over windows"),
    }
    if payload["pairs"]:
        head = payload["pairs"][0]
        metadata["agreement"] = float(head["agreement"])
        metadata["versions"] = dg.MetadataValue.md(versions_markdown(payload))
        metadata["confusion_between_versions"] = dg.MetadataValue.md(confusion_markdown(head))
        metadata["production_only_right"] = head["production_only_right"]
        metadata["challenger_only_right"] = head["challenger_only_right"]
        for side in ("production", "challenger"):
            if head[f"{side}_accuracy"] is not None:
                metadata[f"{side}_accuracy"] = float(head[f"{side}_accuracy"])
                metadata[f"{side}_ci_low"], metadata[f"{side}_ci_high"] = map(float, head[f"{side}_ci"])
            for stat in ("p50", "p95"):
                if head["latency_ms"][side][stat] is not None:
                    metadata[f"{side}_model_ms_{stat}"] = float(head["latency_ms"][side][stat])
        if head["p_value"] is not None:
            metadata["p_value"] = float(head["p_value"])
    return metadata


def comparison_history(artifact_store: ArtifactStore, current: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline figures of every window published so far (the newest file of each), this one's replaced by
    ``current``, oldest first, the last :data:`PLOTTED_WINDOWS`."""
    from mlops_assets.core.monitoring.live_comparison import COMPARISON_FILE, read_comparison

    newest: dict[str, tuple[float, dict[str, Any]]] = {}
    for version in artifact_store.versions("reports"):
        if not version.startswith(REPORT_PREFIX):
            continue
        path = artifact_store.path("reports", version) / COMPARISON_FILE
        try:
            stamp, payload = path.stat().st_mtime, read_comparison(path)
        except (OSError, ValueError):  # one unreadable file leaves its window out of the plot, not the run
            continue
        if payload.get("window") and stamp >= newest.get(payload["window"], (-1.0, {}))[0]:
            newest[payload["window"]] = (stamp, payload)
    windows = {window: payload for window, (_, payload) in newest.items()}
    windows[current["window"]] = current
    history = []
    for window in sorted(windows)[-PLOTTED_WINDOWS:]:
        payload = windows[window]
        head = payload["pairs"][0] if payload.get("pairs") else {}
        history.append({"window": window, "agreement": head.get("agreement"),
                        **{f"{side}_{name}": head.get(f"{side}_{name}") for side in ("production", "challenger")
                           for name in ("accuracy", "ci")}})
    return history


def publish_comparison(artifact_store: ArtifactStore, window_version: str, payload: dict, plot: Path) -> Path:
    """The window's comparison under reports/comparison-<window>-<content hash> (with its plot): measured again
    (more labels), a new file, so each materialization keeps the figures it showed."""
    import shutil

    from mlops_assets.core.monitoring.live_comparison import COMPARISON_FILE, write_comparison

    def build(directory: Path) -> None:
        write_comparison(directory, payload)
        shutil.copyfile(plot, directory / PLOT_FILE)

    version = f"{REPORT_PREFIX}{window_version.removeprefix('window-')}-{short_hash(payload)[:8]}"
    return artifact_store.publish("reports", version, build) / COMPARISON_FILE


@dg.asset(
    kinds={"pandas"},
    code_version=MONITOR_CODE_VERSION,
    partitions_def=profile_partitions(),
    description=(
        "Per window: production and the challenger in the shadow slot on the same live requests: requests compared, "
        "share mirrored, agreement, the confusion between their answers, model latency per version (p50/p95), and "
        "on the labelled ones each version's accuracy with a 95 % Wilson interval and McNemar's exact verdict "
        "(better / worse / not enough evidence at MLOPS_COMPARISON_ALPHA). Materialised again by feedback_sensor "
        "as labels arrive on a window a shadow scored."
    ),
)
def live_comparison(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStore,
    performance_policy: PerformancePolicy,
) -> dg.MaterializeResult:
    from mlops_assets.core.model.plots import comparison_over_windows_png
    from mlops_assets.core.monitoring.live_comparison import read_window_comparison

    time_window = context.partition_time_window
    start, end = time_window.start.astimezone(UTC), time_window.end.astimezone(UTC)
    window = window_label(window_version(start))
    comparison = read_window_comparison(artifact_store.root_path, start, end, window,
                                        performance_policy.comparison_alpha, performance_policy.min_labelled)
    payload = comparison.payload()
    with tempfile.TemporaryDirectory() as scratch:
        plot = comparison_over_windows_png(comparison_history(artifact_store, payload), Path(scratch) / PLOT_FILE,
                                           "production vs challenger on the same requests")
        report = publish_comparison(artifact_store, window_version(start), payload, plot)
        metadata = comparison_metadata(payload, report, plot)
    context.log.info(f"{window}: {payload['status']}")
    return dg.MaterializeResult(metadata=metadata)
