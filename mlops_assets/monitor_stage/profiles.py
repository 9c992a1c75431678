"""Monitor stage: whylogs profiles of the production model's training data and of served traffic.

- ``reference_profile``: the training split of the production model (image features plus the model's own
  predictions on it), versioned with the model.
- ``inference_profiles``: one profile per time window of the inference log (hourly by default), each
  written once. Longer views merge them.

Where the profiles live is owned by :mod:`mlops_assets.core.monitoring.profile_layout`; the drift sensor and the drift
report read the same files through it, never the rows.
"""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.monitoring.profile_layout import PROFILE_FILE, reference_version, window_label, window_version
from mlops_assets.monitor_stage.windows import profile_partitions
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource

MONITOR_CODE_VERSION = "1"


class MonitorError(RuntimeError):
    """The monitor cannot do what it was asked (no production model, no reference, an open window)."""


def production_model_version(model_registry: ModelRegistryResource) -> str | None:
    """The production version from the registry's pointer (no BentoML import: sensors call it)."""
    from mlops_assets.core.registry.registry import RegistryError

    try:
        return model_registry.registry().production_version()
    except RegistryError as exc:
        raise MonitorError(str(exc)) from exc


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


class ReferenceConfig(dg.Config):
    version: str = Field(
        default="",
        description=(
            "The model version to profile. Empty: the version registered_model registered last (every version "
            "a build registers gets its reference, so a later switch to it, by any path, can be judged at once)."
        ),
    )


def last_registered_version(instance: dg.DagsterInstance) -> str | None:
    """The version registered_model's latest materialization registered (its ``tag`` metadata)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("registered_model"))
    tag = event.asset_materialization.metadata.get("tag") if event and event.asset_materialization else None
    return str(tag.value).split(":", 1)[1] if tag is not None else None


@dg.asset(
    kinds={"whylogs"},
    code_version=MONITOR_CODE_VERSION,
    deps=["registered_model"],
    description=(
        "whylogs profile of a model version's training split: the per-image features the service logs, plus "
        "the model's own predicted class and confidence on those images. Built for every registered version "
        "(so any version that may serve has one); drift is measured against production's."
    ),
)
def reference_profile(
    context: dg.AssetExecutionContext, config: ReferenceConfig, artifact_store: ArtifactStore,
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    registry = model_registry.registry()
    version = config.version or last_registered_version(context.instance) or registry.production_version()
    if version is None:
        raise MonitorError("no registered model version to profile: materialise registered_model (build_job) first")
    model = registry.get(version)
    version_name, metadata = publish_reference_profile(model, artifact_store)
    context.log.info(f"{version_name}: {metadata['n_rows']} training images profiled"
                     + ("" if model.version == registry.production_version() else " (not in production now)"))
    return dg.MaterializeResult(data_version=dg.DataVersion(version_name), metadata=metadata)


def publish_reference_profile(production, artifact_store: ArtifactStore) -> tuple[str, dict]:
    """Profile the training split of ``production`` (a registry ModelVersion) once; its version and the metadata
    the UI shows. Also called when a reviewer's approval changes production (``review_model_job``)."""
    import pandas as pd

    from mlops_assets.core.data.artifacts import open_split
    from mlops_assets.core.data.features import image_features, with_predictions
    from mlops_assets.core.data.pixel_store import model_batch_rows
    from mlops_assets.core.model.onnx_model import onnx_logits, open_session, softmax
    from mlops_assets.core.monitoring.drift import profile_frame, profile_rows

    splits_version = production.labels.get("splits_version")
    splits_dir = artifact_store.path("splits", str(splits_version))
    train = open_split(splits_dir, "train")
    session = open_session(production.onnx_path)
    class_names = list(production.metadata.get("class_names") or [])
    parts = []
    for start, x in train.training_batches(model_batch_rows(train.shape)):  # features and scores by batch
        probabilities = softmax(onnx_logits(session, x))
        labels = [class_names[i] if i < len(class_names) else str(i) for i in probabilities.argmax(axis=1)]
        sizes = None if train.original_sizes is None else train.original_sizes[start : start + len(x)]
        parts.append(with_predictions(image_features(x, sizes), labels, probabilities.max(axis=1)))
    if not parts:
        raise MonitorError(f"the production model's training split {splits_dir} holds no image to profile")
    frame = pd.concat(parts, ignore_index=True)
    view = profile_frame(frame)
    version = reference_version(production.version)
    summary = {
        "model_version": production.version,
        "splits_version": splits_version,
        "n_rows": len(frame),
        "columns": list(frame.columns),
        "written_at": datetime.now(UTC).isoformat(),
    }
    directory, _ = artifact_store.profiles().publish(version, view, summary)
    return version, {
        "version": version,
        "model_version": production.version,
        "splits_version": str(splits_version),
        "n_rows": profile_rows(view),
        "profile_path": dg.MetadataValue.path(str(directory / PROFILE_FILE)),
        "profile_bytes": (directory / PROFILE_FILE).stat().st_size,
        "features": dg.MetadataValue.md(_profile_table(view)),
    }


@dg.asset(
    kinds={"whylogs"},
    code_version=MONITOR_CODE_VERSION,
    partitions_def=profile_partitions(),
    description=(
        "One whylogs profile per time window (hourly unless MLOPS_PROFILE_CRON says otherwise) of the "
        "inference log, written once as a .bin file. Profiles merge: a day is the merge of its hours."
    ),
)
def inference_profiles(context: dg.AssetExecutionContext, artifact_store: ArtifactStore) -> dg.MaterializeResult:
    from mlops_assets.core.data.features import OOD_FLAGGED
    from mlops_assets.core.model.ood import flagged_share
    from mlops_assets.core.monitoring.drift import profile_frame
    from mlops_assets.core.serving.inference_log import read_window

    window = context.partition_time_window
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    if end > datetime.now(UTC):  # Dagster offers only ended windows; this guards against clock skew
        raise MonitorError(
            f"window {start:%Y-%m-%dT%H:%M} ends at {end:%H:%M} UTC and is still open; profiles are written "
            "once, so profile it after it ends (for a demo, shorten the windows with MLOPS_PROFILE_CRON)"
        )
    version = window_version(start)
    profiles = artifact_store.profiles()
    if profiles.exists(version):
        directory = profiles.directory(version)
        summary = profiles.summary(version)
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
    ood = flagged_share(rows[OOD_FLAGGED] if OOD_FLAGGED in rows else None).as_metadata()
    summary = {
        "window": window_label(version),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "n_rows": len(rows),
        "model_versions": models,
        **ood,
        "written_at": datetime.now(UTC).isoformat(),
    }
    # several answering versions (A/B, a promotion): each one's rows apart too, judged against its own reference
    answered = ({str(v): profile_frame(rows[rows["model_version"] == v]) for v in models} if len(models) > 1
                else None)
    directory, _ = profiles.publish(version, view, summary, answered)
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "window": window_label(version),
            "n_rows": len(rows),
            "profile_written": True,
            "profile_path": dg.MetadataValue.path(str(directory / PROFILE_FILE)),
            "profile_bytes": (directory / PROFILE_FILE).stat().st_size,
            "model_versions": dg.MetadataValue.md(markdown_table(["model version", "predictions"], models.items())),
            **ood,  # out-of-distribution answers in the window: the share is plotted over the windows
            "features": dg.MetadataValue.md(_profile_table(view)),
        }
    )
