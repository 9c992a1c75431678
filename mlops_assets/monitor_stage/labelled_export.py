"""Monitor stage: labelled production images into the labelled source (``export_feedback_job``).

The same as ``mlops-feedback export``, from the launchpad: every prediction with feedback whose image the service
kept is written once into the image-folder source, so the drift sensor's retraining policy sees new labels.
"""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource


class ExportConfig(dg.Config):
    since: str = Field(default="", description="Only predictions made on or after this day, YYYY-MM-DD (UTC).")
    until: str = Field(default="", description="Only predictions made before this day, YYYY-MM-DD (UTC).")


def _day(text: str) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC) if text else None


@dg.op(description="Write labelled production images into the image-folder source, each once.")
def export_labelled_feedback(
    context: dg.OpExecutionContext, config: ExportConfig, artifact_store: ArtifactStore, dataset_source: DatasetSource,
) -> None:
    from mlops_assets.core.serving.feedback import export_labelled_images

    if dataset_source.kind != "image_folder" or not dataset_source.path:
        raise dg.Failure(description=(
            f"the labelled source is {dataset_source.describe()}: exporting needs an image folder "
            "(MLOPS_DATASET_KIND=image_folder, MLOPS_IMAGE_FOLDER)"))
    try:
        since, until = _day(config.since), _day(config.until)
    except ValueError as exc:
        raise dg.Failure(description=f"since/until must be YYYY-MM-DD: {exc}") from exc
    report = export_labelled_images(artifact_store.root_path, dataset_source.path, since, until)
    context.log.info(f"{report.written} labelled production image(s) written into {dataset_source.path} "
                     f"({report.existing} exported before, {report.without_image} without a kept image)")
    context.log_event(dg.AssetObservation(asset_key="raw_images", metadata={
        "exported_production_images": report.written,
        "already_exported": report.existing,
        "labelled_without_image": report.without_image,
        "by_class": dg.MetadataValue.json(report.by_class),
        "source": dg.MetadataValue.path(dataset_source.path),
    }))
