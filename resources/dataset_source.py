"""Where labelled images come from: scikit-learn's digits (the embedded default) or a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings
from mlops_assets.core.common.progress import progress
from mlops_assets.core.data.artifacts import write_dataset, write_dataset_stream
from mlops_assets.core.data.image_folder import decode_folder, list_image_folder
from mlops_assets.core.data.images import (
    PreprocessSpec,
    digits_fingerprint,
    folder_fingerprint,
    load_digits_dataset,
)
from mlops_assets.core.data.pixel_store import DecodedChunk


class DatasetSource(dg.ConfigurableResource):
    """The labelled image source.

    ``digits`` needs nothing else. ``image_folder`` reads ``path`` (one sub-folder per class, PNG or
    JPEG of any size and mode) and converts every image to ``height``×``width`` with ``channels``
    channels, in ``decode_workers`` processes; unreadable files are skipped and listed in the asset's metadata.
    """

    kind: Literal["digits", "image_folder"] = settings.default_value(settings.DATASET_KIND)
    path: str = Field(
        default=settings.default_value(settings.IMAGE_FOLDER),
        description="Image folder root (kind=image_folder).",
    )
    height: int = Field(
        default=settings.default_value(settings.IMAGE_HEIGHT),
        description="Target height for image_folder images.",
    )
    width: int = Field(
        default=settings.default_value(settings.IMAGE_WIDTH),
        description="Target width for image_folder images.",
    )
    channels: int = Field(
        default=settings.default_value(settings.IMAGE_CHANNELS),
        description="1 (grayscale) or 3 (RGB) for image_folder images.",
    )
    min_images_per_class: int = Field(default=3, description="Fewer readable images in a class is an error.")
    max_image_pixels: int = Field(
        default=settings.default_value(settings.MAX_IMAGE_PIXELS),
        description="Larger images (from their header) are skipped, never decoded.",
    )
    geometry_origin: str = Field(
        default="", description=(
            "Where height, width and channels came from (set from the settings; empty: this resource's own "
            "configuration). Shown in raw_images' metadata, so a stale settings file cannot resize silently."
        ),
    )
    decode_workers: int = Field(
        default=settings.default_value(settings.DECODE_WORKERS),
        description=(
            "Processes decoding an image folder in parallel; 0 = one per core, at most one per 10,000 files "
            "(a worker's start costs what a few thousand decodes do); 1 = no pool."
        ),
    )

    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(height=self.height, width=self.width, channels=self.channels)

    def describe_geometry(self) -> str:
        """Where the geometry images are converted to comes from, in words."""
        if self.kind == "digits":
            return "the digits' own 8×8 (the geometry settings apply to image folders)"
        return self.geometry_origin or "the dataset_source resource's configuration"

    def describe(self) -> str:
        return "sklearn digits (8×8)" if self.kind == "digits" else f"image folder {self.path}"

    def fingerprint(self) -> str:
        """What labelled data the source holds now, without decoding it (cheap enough for every sensor
        tick). A model trained on a source with this fingerprint has seen all of its labels."""
        if self.kind == "digits":
            return digits_fingerprint()
        if not self.path:
            raise ValueError("DatasetSource kind=image_folder needs `path` (set MLOPS_IMAGE_FOLDER)")
        return folder_fingerprint(self.path)

    def write_dataset(self, directory: Path, extra: dict) -> str:
        """Decode the source into a dataset directory (its pixels streamed to disk, a chunk in memory at a time);
        returns the dataset's version, its content hash."""
        if self.kind == "digits":
            return write_dataset(directory, load_digits_dataset(), extra)
        if not self.path:
            raise ValueError("DatasetSource kind=image_folder needs `path` (set MLOPS_IMAGE_FOLDER)")
        listing = list_image_folder(self.path)
        chunks = decode_folder(listing, self.spec(), self.min_images_per_class, self.max_image_pixels,
                               workers=self.decode_workers)
        with progress(len(listing.files), f"decoding {self.path}", "image") as bar:
            return write_dataset_stream(directory, listing.class_names, self.spec(), _counted(chunks, bar), extra,
                                        listing.skipped)


def _counted(chunks: Iterator[DecodedChunk], bar: Any) -> Iterator[DecodedChunk]:
    """The chunks, moving the progress bar by the files each one covers."""
    for chunk in chunks:
        bar.update(len(chunk.labels) + len(chunk.skipped))
        yield chunk
