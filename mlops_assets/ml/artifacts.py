"""File layout inside artifact version directories (datasets and splits), read and written here only.

A dataset or split directory holds ``manifest.json`` (what it is and where it came from) and one
``.npz`` per array set, with images stored as uint8 C×H×W exactly as decoded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.ml.images import ImageDataset, PreprocessSpec, image_hashes, to_training_scale

MANIFEST = "manifest.json"


class ArtifactFormatError(ValueError):
    """An artifact directory that is missing files or holds arrays of the wrong shape."""


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactFormatError(f"{path} is missing: {directory} is not a complete artifact") from exc


def write_arrays(
    directory: Path, name: str, images: np.ndarray, labels: np.ndarray, original_sizes: np.ndarray | None = None
) -> None:
    arrays = {"images": images.astype(np.uint8), "labels": labels}
    if original_sizes is not None:
        arrays["original_sizes"] = np.asarray(original_sizes, dtype=np.int64)
    np.savez_compressed(directory / f"{name}.npz", **arrays)


def read_arrays(directory: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N×C×H×W) and int64 labels of one array set."""
    path = Path(directory) / f"{name}.npz"
    try:
        with np.load(path) as data:
            images, labels = data["images"], data["labels"].astype(np.int64)
    except FileNotFoundError as exc:
        raise ArtifactFormatError(f"{path} is missing") from exc
    except KeyError as exc:
        raise ArtifactFormatError(f"{path} lacks the array {exc}") from exc
    if images.ndim != 4 or len(images) != len(labels):
        raise ArtifactFormatError(f"{path}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def read_original_sizes(directory: str | Path, name: str) -> np.ndarray | None:
    """(height, width) of each image before resizing, or None for artifacts written without them."""
    with np.load(Path(directory) / f"{name}.npz") as data:
        return data["original_sizes"] if "original_sizes" in data.files else None


def read_split(directory: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One split in the training scale: float32 images and int64 labels."""
    images, labels = read_arrays(directory, name)
    return to_training_scale(images), labels


def read_split_hashes(directory: str | Path, names: tuple[str, ...]) -> set[str]:
    """Content hashes of every image in the named array sets (e.g. what a model trained on)."""
    hashes: set[str] = set()
    for name in names:
        images, _ = read_arrays(directory, name)
        hashes.update(image_hashes(images))
    return hashes


def write_dataset(directory: Path, dataset: ImageDataset, extra: dict[str, Any]) -> None:
    write_arrays(directory, "images", dataset.images, dataset.labels, dataset.original_sizes)
    write_manifest(
        directory,
        {
            "class_names": dataset.class_names,
            "spec": dataset.spec.as_dict(),
            "n_images": int(len(dataset.labels)),
            "sources": dataset.sources,
            "skipped": [{"path": p, "reason": r} for p, r in dataset.skipped],
            **extra,
        },
    )


def read_dataset(directory: str | Path) -> ImageDataset:
    manifest = read_manifest(directory)
    images, labels = read_arrays(directory, "images")
    return ImageDataset(
        images=images,
        labels=labels,
        class_names=list(manifest["class_names"]),
        spec=PreprocessSpec(**manifest["spec"]),
        sources=list(manifest.get("sources", [])),
        skipped=[(s["path"], s["reason"]) for s in manifest.get("skipped", [])],
        original_sizes=read_original_sizes(directory, "images"),
    )
