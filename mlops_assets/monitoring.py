"""Monitor stage: whylogs profiles of the reference and of served traffic, and the drift between them.

- ``reference_profile``: the profile of the production model's training split (image features plus
  the model's own predictions on it), versioned with the model: ``profiles/reference-<model version>/``.
- ``inference_profiles``: one profile per time window of the inference log (hourly by default),
  each written once: ``profiles/window-<YYYYmmddTHHMM>/``. Longer views merge them.
- ``drift_report``: the latest windows merged and compared with the reference, as a Markdown table
  and whylogs' HTML drift report.

The drift sensor (``sensors/drift_sensor.py``) reads the same profile files, never the rows. This
module is the one place that knows their layout.
"""

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.jobs import RUN_KIND_TAG
from mlops_assets.metadata import markdown_table, short_hash
from resources import settings
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource

MONITOR_CODE_VERSION = "1"
PROFILE_CRON_ENV = settings.PROFILE_CRON
MONITOR_START_ENV = settings.MONITOR_START
DEFAULT_PROFILE_CRON = "0 * * * *"
DEFAULT_MONITOR_START = "2026-11-01-00:00"
PROFILE_FILE = "profile.bin"
SUMMARY_FILE = "summary.json"
WINDOW_PREFIX = "window-"
REFERENCE_PREFIX = "reference-"


class MonitorError(RuntimeError):
    """The monitor cannot do what it was asked (no production model, no reference, an open window)."""


# -- partitions and file layout -----------------------------------------------------------------
def profile_partitions() -> dg.TimeWindowPartitionsDefinition:
    """Hourly windows by default; MLOPS_PROFILE_CRON sets another cadence (e.g. "*/5 * * * *" for a demo)."""
    cron = os.environ.get(PROFILE_CRON_ENV) or DEFAULT_PROFILE_CRON
    start = os.environ.get(MONITOR_START_ENV) or DEFAULT_MONITOR_START
    if cron == DEFAULT_PROFILE_CRON:
        return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC")
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=cron, start=start, fmt="%Y-%m-%d-%H:%M", timezone="UTC"
    )


def window_version(start: datetime) -> str:
    """The artifact version of the profile of the window starting at ``start`` (sorts by time)."""
    return f"{WINDOW_PREFIX}{start.astimezone(UTC):%Y%m%dT%H%M}"


def window_label(version: str) -> str:
    """"window-20261122T1000" → "2026-11-22T10" (minutes shown only when not on the hour)."""
    stamp = datetime.strptime(version.removeprefix(WINDOW_PREFIX), "%Y%m%dT%H%M")
    return f"{stamp:%Y-%m-%dT%H}" + (f":{stamp:%M}" if stamp.minute else "")


def reference_version(model_version: str) -> str:
    return f"{REFERENCE_PREFIX}{model_version}"


def list_windows(store: ArtifactStore) -> list[str]:
    """Versions of every profiled window, oldest first."""
    return [v for v in store.versions("profiles") if v.startswith(WINDOW_PREFIX)]


def read_summary(directory: str | Path) -> dict[str, Any]:
    try:
        return json.loads((Path(directory) / SUMMARY_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def production_model_version(model_registry: ModelRegistryResource) -> str | None:
    """The production version from the registry's pointer (no BentoML import: sensors call it)."""
    from mlops_assets.ml.registry import RegistryError

    try:
        return model_registry.registry().production_version()
    except RegistryError as exc:
        raise MonitorError(str(exc)) from exc


def publish_profile(store: ArtifactStore, version: str, view, summary: dict[str, Any]) -> tuple[Path, bool]:
    from mlops_assets.ml.drift import write_profile

    existed = store.exists("profiles", version)

    def build(directory: Path) -> None:
        write_profile(view, directory / PROFILE_FILE)
        (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))

    return store.publish("profiles", version, build), not existed


def _profile_table(view) -> str:
    """count / mean / p05 / median / p95 per numeric column of a profile, as Markdown."""
    summary = view.to_pandas()
    rows = []
    for column, stats in summary.iterrows():
        mean = stats.get("distribution/mean")
        if mean is None or mean != mean:  # NaN: a categorical column
            top = stats.get("frequent_items/frequent_strings")
            rows.append([column, int(stats.get("counts/n", 0)), "—", "—", "—", "—",
                         str(top)[:60] if top is not None else "—"])
            continue
        rows.append([column, int(stats.get("counts/n", 0)), float(mean), float(stats["distribution/q_05"]),
                     float(stats["distribution/median"]), float(stats["distribution/q_95"]), ""])
    return markdown_table(["feature", "rows", "mean", "p05", "median", "p95", "top values"], rows)


# -- assets -----------------------------------------------------------------------------------
@dg.asset(
    group_name="monitor",
    kinds={"whylogs"},
    code_version=MONITOR_CODE_VERSION,
    owners=["team:ml-platform"],
    deps=["registered_model"],
    description=(
        "whylogs profile of the production model's training split: the per-image features the service "
        "logs, plus the model's own predicted class and confidence on those images. Versioned with the "
        "production model; drift is measured against it."
    ),
)
def reference_profile(
    context: dg.AssetExecutionContext, artifact_store: ArtifactStore, model_registry: ModelRegistryResource
) -> dg.MaterializeResult:
    from mlops_assets.ml.artifacts import read_arrays, read_original_sizes
    from mlops_assets.ml.drift import profile_frame, profile_rows
    from mlops_assets.ml.features import image_features, with_predictions
    from mlops_assets.ml.images import to_training_scale
    from mlops_assets.ml.onnx_model import onnx_logits, open_session, softmax

    production = model_registry.registry().production()
    if production is None:
        raise MonitorError("no production model: materialise registered_model (build_job) first")
    splits_version = production.labels.get("splits_version")
    splits_dir = artifact_store.path("splits", str(splits_version))
    images, _ = read_arrays(splits_dir, "train")
    probabilities = softmax(onnx_logits(open_session(production.onnx_path), to_training_scale(images)))
    class_names = list(production.metadata.get("class_names") or [])
    predicted = probabilities.argmax(axis=1)
    labels = [class_names[i] if i < len(class_names) else str(i) for i in predicted]
    sizes = read_original_sizes(splits_dir, "train")
    frame = with_predictions(image_features(images, sizes), labels, probabilities.max(axis=1))
    view = profile_frame(frame)
    version = reference_version(production.version)
    summary = {
        "model_version": production.version,
        "splits_version": splits_version,
        "n_rows": len(frame),
        "columns": list(frame.columns),
        "written_at": datetime.now(UTC).isoformat(),
    }
    directory, written = publish_profile(artifact_store, version, view, summary)
    context.log.info(f"{version}: {len(frame)} training images profiled ({'written' if written else 'existed'})")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "version": version,
            "model_version": production.version,
            "splits_version": str(splits_version),
            "n_rows": profile_rows(view),
            "profile_path": dg.MetadataValue.path(str(directory / PROFILE_FILE)),
            "profile_bytes": (directory / PROFILE_FILE).stat().st_size,
            "features": dg.MetadataValue.md(_profile_table(view)),
        },
    )


@dg.asset(
    group_name="monitor",
    kinds={"whylogs"},
    code_version=MONITOR_CODE_VERSION,
    owners=["team:ml-platform"],
    partitions_def=profile_partitions(),
    description=(
        "One whylogs profile per time window (hourly unless MLOPS_PROFILE_CRON says otherwise) of the "
        "inference log, written once as a .bin file. Profiles merge: a day is the merge of its hours."
    ),
)
def inference_profiles(context: dg.AssetExecutionContext, artifact_store: ArtifactStore) -> dg.MaterializeResult:
    from mlops_assets.ml.drift import profile_frame
    from mlops_assets.ml.inference_log import read_window

    window = context.partition_time_window
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    if end > datetime.now(UTC):  # Dagster offers only ended windows; this guards against clock skew
        raise MonitorError(
            f"window {start:%Y-%m-%dT%H:%M} ends at {end:%H:%M} UTC and is still open; profiles are written "
            "once, so profile it after it ends (for a demo, shorten the windows with MLOPS_PROFILE_CRON)"
        )
    version = window_version(start)
    if artifact_store.exists("profiles", version):
        directory = artifact_store.path("profiles", version)
        summary = read_summary(directory)
        context.log.info(f"{version} was already profiled; profiles are written once")
        return dg.MaterializeResult(
            metadata={"version": version, "n_rows": int(summary.get("n_rows", 0)), "already_profiled": True,
                      "profile_path": dg.MetadataValue.path(str(directory / PROFILE_FILE))}
        )
    rows = read_window(artifact_store.root_path, start, end)
    if rows.empty:
        context.log.info(f"no logged predictions in {start:%Y-%m-%dT%H:%M}–{end:%H:%M}; nothing to profile")
        return dg.MaterializeResult(metadata={"version": version, "n_rows": 0, "profile_written": False})
    view = profile_frame(rows)
    models = rows["model_version"].value_counts().to_dict() if "model_version" in rows else {}
    summary = {
        "window": window_label(version),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "n_rows": len(rows),
        "model_versions": models,
        "written_at": datetime.now(UTC).isoformat(),
    }
    directory, _ = publish_profile(artifact_store, version, view, summary)
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "window": window_label(version),
            "n_rows": len(rows),
            "profile_written": True,
            "profile_path": dg.MetadataValue.path(str(directory / PROFILE_FILE)),
            "profile_bytes": (directory / PROFILE_FILE).stat().st_size,
            "model_versions": dg.MetadataValue.md(markdown_table(["model version", "predictions"], models.items())),
            "features": dg.MetadataValue.md(_profile_table(view)),
        }
    )


class DriftReportConfig(dg.Config):
    windows: int = Field(default=24, description="How many of the latest window profiles to merge and compare.")
    drift_share: float | None = Field(
        default=None, description="Alarm threshold (default: MLOPS_DRIFT_SHARE or 0.30)."
    )
    p_value: float | None = Field(
        default=None, description="Per-feature p-value (default: MLOPS_DRIFT_P_VALUE or 0.05)."
    )
    distance: float | None = Field(
        default=None, description="Per-feature Hellinger distance (default: MLOPS_DRIFT_DISTANCE or 0.15)."
    )
    min_rows: int | None = Field(default=None, description="Minimum rows (default: MLOPS_DRIFT_MIN_ROWS or 100).")


@dg.asset(
    group_name="monitor",
    kinds={"whylogs"},
    code_version=MONITOR_CODE_VERSION,
    owners=["team:ml-platform"],
    deps=[reference_profile, inference_profiles],
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
) -> dg.MaterializeResult:
    from mlops_assets.ml.drift import (
        DriftThresholds,
        evaluate_drift,
        merge_profiles,
        read_profile,
        with_thresholds,
        write_html_report,
    )

    thresholds = with_thresholds(
        DriftThresholds.from_env(), drift_share=config.drift_share, p_value=config.p_value,
        distance=config.distance, min_rows=config.min_rows,
    )
    model_version = production_model_version(model_registry)
    if model_version is None:
        raise MonitorError("no production model: materialise registered_model (build_job) first")
    ref_version = reference_version(model_version)
    if not artifact_store.exists("profiles", ref_version):
        raise MonitorError(f"no reference profile for production model {model_version}: materialise reference_profile")
    reference = read_profile(artifact_store.path("profiles", ref_version) / PROFILE_FILE)
    windows = list_windows(artifact_store)[-config.windows:]
    if not windows:
        raise MonitorError("no inference profiles yet: materialise inference_profiles for a window with traffic")
    views = [read_profile(artifact_store.path("profiles", w) / PROFILE_FILE) for w in windows]
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


# -- jobs and schedules -------------------------------------------------------------------------
retrain_job = dg.define_asset_job(
    name="retrain_job",
    # raw_images and everything downstream of it (splits … registered_model, bento, the reference
    # profile of the new production model), but not the traffic profiles or the report.
    selection=dg.AssetSelection.assets("raw_images").downstream()
    - dg.AssetSelection.assets(inference_profiles, drift_report),
    executor_def=dg.in_process_executor,
    tags={RUN_KIND_TAG: "training"},
    description="Re-materialise the model on the latest data, launched by the drift sensor.",
)

profile_job = dg.define_asset_job(
    name="profile_inference_log_job",
    selection=dg.AssetSelection.assets(inference_profiles),
    executor_def=dg.in_process_executor,
    tags={RUN_KIND_TAG: "monitoring"},
    description="Profile one window of the inference log.",
)

drift_report_job = dg.define_asset_job(
    name="drift_report_job",
    selection=dg.AssetSelection.assets(drift_report),
    executor_def=dg.in_process_executor,
    tags={RUN_KIND_TAG: "monitoring"},
    description="Compare the latest traffic profiles with the reference.",
)

profiling_schedule = dg.build_schedule_from_partitioned_job(
    profile_job,
    name="inference_profiling_schedule",
    minute_of_hour=5 if (os.environ.get(PROFILE_CRON_ENV) or DEFAULT_PROFILE_CRON) == DEFAULT_PROFILE_CRON else None,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Profile each window of the inference log once it has ended (hourly by default, at :05).",
)

daily_drift_report_schedule = dg.ScheduleDefinition(
    name="daily_drift_report",
    job=drift_report_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 00:30 UTC: the last 24 windows merged and compared with the reference.",
)

monitor_assets = [reference_profile, inference_profiles, drift_report]
monitor_jobs = [retrain_job, profile_job, drift_report_job]
monitor_schedules = [profiling_schedule, daily_drift_report_schedule]
