"""File layout inside artifact version directories (datasets and splits), read and written here only.

- A **dataset** directory holds ``manifest.json`` (class names, geometry, source files, skipped files) and the
  dataset's pixel store (:mod:`mlops_assets.core.data.pixel_store`): every image once, as uint8, memory-mapped.
- A **splits** directory holds ``manifest.json`` and one ``<split>.rows.npy`` per split: ascending positions
  into the pixel store that the manifest names by relative path (``pixels``), normally the dataset it was split
  from. Pixels are therefore stored once, however many split versions point at them. Its ``assignments.npz`` is
  the ledger of its lineage: the split of every image the lineage has ever seen (content hashes, sorted, and one
  split code each), present or not in this version, so an image that comes back finds its split again.

Splits written before this layout held compressed ``<split>.npz`` copies of their pixels. They are still read
(the carried-forward split assignment and production's training images go back to them), never written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.core.data.images import ImageDataset, PreprocessSpec, content_hash, to_training_scale
from mlops_assets.core.data.pixel_store import HASH_DTYPE, DecodedChunk, ImageRows, PixelStoreWriter, open_pixel_store

if TYPE_CHECKING:
    import numpy as np

MANIFEST = "manifest.json"
ROWS_SUFFIX = ".rows.npy"
ASSIGNMENTS = "assignments.npz"
LEGACY_SUFFIX = ".npz"


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


# -- datasets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredDataset:
    """A dataset directory opened for reading: every row of its pixel store, and what the manifest says."""

    directory: Path
    rows: ImageRows
    class_names: list[str]
    spec: PreprocessSpec
    skipped: list[tuple[str, str]]


def write_dataset_stream(
    directory: Path, class_names: list[str], spec: PreprocessSpec, chunks: Iterable[DecodedChunk],
    extra: dict[str, Any], skipped: Iterable[tuple[str, str]] = (),
) -> str:
    """Write decoded chunks as a dataset directory, one chunk in memory at a time; returns its version (the first
    16 hex digits of :func:`~mlops_assets.core.data.images.content_hash`, the same as the images would hash in
    memory)."""
    writer = PixelStoreWriter(directory, (spec.channels, spec.height, spec.width))
    sources: list[str] = []
    skipped = list(skipped)
    for chunk in chunks:
        writer.append(chunk.images, chunk.labels, chunk.original_sizes)
        sources += chunk.sources
        skipped += chunk.skipped
    store = writer.finish()
    version = content_hash(class_names, spec, store.pixels, store.labels, store.original_sizes)[:16]
    write_manifest(
        directory,
        {
            "version": version,
            "class_names": class_names,
            "spec": spec.as_dict(),
            "n_images": len(store),
            "sources": sources,
            "skipped": [{"path": p, "reason": r} for p, r in skipped],
            **extra,
        },
    )
    return version


def write_dataset(directory: Path, dataset: ImageDataset, extra: dict[str, Any]) -> str:
    """An in-memory dataset (the bundled digits) written as a dataset directory; returns its version."""
    import numpy as np
    sizes = dataset.original_sizes
    if sizes is None:
        sizes = np.tile([dataset.spec.height, dataset.spec.width], (len(dataset.labels), 1))
    chunk = DecodedChunk(dataset.images, dataset.labels, sizes, list(dataset.sources))
    return write_dataset_stream(directory, dataset.class_names, dataset.spec, [chunk], extra, dataset.skipped)


def open_dataset(directory: str | Path) -> StoredDataset:
    directory = Path(directory)
    manifest = read_manifest(directory)
    return StoredDataset(
        directory=directory,
        rows=open_pixel_store(directory),
        class_names=list(manifest["class_names"]),
        spec=PreprocessSpec(**manifest["spec"]),
        skipped=[(s["path"], s["reason"]) for s in manifest.get("skipped", [])],
    )


# -- splits --------------------------------------------------------------------------------------
def write_splits(directory: Path, pixels: str | Path, indices: Mapping[str, np.ndarray],
                 manifest: dict[str, Any]) -> None:
    """A splits directory: each split's ascending row positions into the pixel store in ``pixels``.

    The store is named relative to the splits directory, so an artifact store can be moved as a whole.
    """
    import numpy as np
    for name, rows in indices.items():
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) > 1 and np.any(np.diff(rows) <= 0):
            raise ArtifactFormatError(f"split {name}: row positions must be ascending and distinct")
        np.save(directory / f"{name}{ROWS_SUFFIX}", rows)
    write_manifest(directory, {**manifest, "pixels": os.path.relpath(Path(pixels).resolve(), directory.resolve())})


def open_split(directory: str | Path, name: str) -> ImageRows:
    """One split's rows: labels, hashes and sizes in memory, pixels memory-mapped (legacy ``.npz``: in memory)."""
    import numpy as np
    directory = Path(directory)
    rows_file = directory / f"{name}{ROWS_SUFFIX}"
    if rows_file.is_file():
        store = open_pixel_store(directory / read_manifest(directory)["pixels"])
        rows = np.load(rows_file)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(store)):
            raise ArtifactFormatError(f"{rows_file} points outside its pixel store of {len(store)} images")
        return store.select(rows)
    legacy = directory / f"{name}{LEGACY_SUFFIX}"
    if legacy.is_file():
        return _open_legacy_split(legacy)
    raise ArtifactFormatError(f"{directory} has no split {name!r} (neither {rows_file.name} nor {legacy.name})")


def _open_legacy_split(path: Path) -> ImageRows:
    import numpy as np
    try:
        with np.load(path) as data:
            images, labels = data["images"], data["labels"].astype(np.int64)
            sizes = data["original_sizes"] if "original_sizes" in data.files else None
    except KeyError as exc:
        raise ArtifactFormatError(f"{path} lacks the array {exc}") from exc
    if images.ndim != 4 or len(images) != len(labels):
        raise ArtifactFormatError(f"{path}: images {images.shape} and labels {labels.shape} do not match")
    return ImageRows.from_arrays(images, labels, sizes)


def read_split(directory: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One whole split in the training scale (float32, 4 bytes a pixel) and its labels.

    For consumers that use every image anyway and run on test-sized data (the release's application test,
    the serving benchmark); the build stages stream :func:`open_split` instead.
    """
    split = open_split(directory, name)
    return to_training_scale(split.images()), split.labels


@dataclass(frozen=True)
class SplitLedger:
    """Every image a split lineage has seen and its split: sorted fixed-width content hashes and a split code
    each (an index into ``split_names``), so 200k images cost 8 MB on disk and load without parsing."""

    hashes: np.ndarray  # HASH_DTYPE, sorted, distinct
    codes: np.ndarray  # uint8 per hash
    split_names: tuple[str, ...]

    @classmethod
    def from_mapping(cls, ledger: Mapping[str, str], split_names: tuple[str, ...]) -> SplitLedger:
        import numpy as np

        hashes = np.asarray(sorted(ledger), dtype=HASH_DTYPE)
        code = {name: i for i, name in enumerate(split_names)}
        codes = np.fromiter((code[ledger[h]] for h in sorted(ledger)), dtype=np.uint8, count=len(hashes))
        return cls(hashes, codes, tuple(split_names))

    def digest(self) -> str:
        """What the ledger holds, hashed: a splits version includes it, so a different memory is another version."""
        import hashlib

        content = repr(self.split_names).encode() + self.hashes.tobytes() + self.codes.tobytes()
        return hashlib.sha256(content).hexdigest()

    def as_mapping(self) -> dict[str, str]:
        return dict(zip((h.decode() for h in self.hashes), (self.split_names[c] for c in self.codes.tolist()),
                        strict=True))


def write_split_ledger(directory: Path, ledger: SplitLedger) -> None:
    import numpy as np

    with open(directory / ASSIGNMENTS, "wb") as out:
        np.savez(out, hashes=ledger.hashes, splits=ledger.codes, split_names=np.asarray(ledger.split_names))


def read_split_ledger(directory: str | Path) -> dict[str, str] | None:
    """The ledger a splits directory carries, or None for one written before ledgers (its splits are all it
    remembers)."""
    import numpy as np

    path = Path(directory) / ASSIGNMENTS
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            hashes, codes, names = data["hashes"], data["splits"], [str(n) for n in data["split_names"]]
    except KeyError as exc:
        raise ArtifactFormatError(f"{path} lacks the array {exc}") from exc
    if len(hashes) != len(codes) or (len(codes) and int(codes.max()) >= len(names)):
        raise ArtifactFormatError(f"{path}: {len(hashes)} hashes, {len(codes)} split codes for splits {names}")
    return SplitLedger(hashes, codes, tuple(names)).as_mapping()


def read_split_hashes(directory: str | Path, names: tuple[str, ...]) -> set[str]:
    """Content hashes of every image in the named splits (e.g. what a model trained on)."""
    hashes: set[str] = set()
    for name in names:
        hashes.update(open_split(directory, name).hash_list())
    return hashes
