"""Pixels held once: a dataset's uint8 images in one memory-mapped file, read in batches by every stage.

A pixel store is a directory (inside a content-addressed, immutable dataset artifact) holding:

- ``pixels.u8``: every image as uint8 N×C×H×W in C order, nothing else (``pixels.json`` gives the shape);
- ``labels.npy`` (int64), ``original_sizes.npy`` (int64 N×2, height and width before resizing) and
  ``hashes.npy`` (the SHA-1 of each image's bytes as 40 hex characters, computed once, when it was decoded).

Readers map ``pixels.u8`` read-only: the operating system pages in what a batch touches and can drop it again,
so a stage's memory grows with its batch, not with the dataset. Per-image metadata (labels, hashes, sizes:
56 bytes an image) is small enough to hold. :class:`ImageRows` is a selection of rows (a split, or all of
them) and the only way stages read pixels: a batch at a time, converted to the training scale per batch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.core.data.images import image_hashes

if TYPE_CHECKING:
    import numpy as np

PIXELS = "pixels.u8"
PIXELS_SHAPE = "pixels.json"
LABELS = "labels.npy"
HASHES = "hashes.npy"
SIZES = "original_sizes.npy"
HASH_DTYPE = "S40"
# Rows per batch when a stage streams a split (a 32×32×3 batch is 12 MB as uint8, 48 MB as float32).
DEFAULT_BATCH = 4096
# Pixels (per channel) in one batch a model scores: the CNN's activations take about 0.5 kB a pixel at width 32,
# so a model batch costs ~32 MB whatever the image size (64 images of 32×32, 1024 of 8×8).
MODEL_BATCH_PIXELS = 2**16


def model_batch_rows(shape: Sequence[int]) -> int:
    """How many images of ``shape`` (…×H×W) one forward pass may take within :data:`MODEL_BATCH_PIXELS`."""
    return max(1, MODEL_BATCH_PIXELS // max(1, int(shape[-2]) * int(shape[-1])))


class PixelStoreError(ValueError):
    """A pixel store with missing files or arrays whose lengths disagree."""


@dataclass
class DecodedChunk:
    """Consecutive decoded images with their labels, sizes before resizing, and the files they came from."""

    images: np.ndarray  # uint8 n×C×H×W
    labels: np.ndarray  # int64 n
    original_sizes: np.ndarray  # int64 n×2
    sources: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of files not decoded


@dataclass(frozen=True)
class ImageRows:
    """Some rows of a pixel store: labels, hashes and sizes in memory, pixels read from the map on demand.

    ``pixels`` is the whole store's array (a read-only memory map, or an in-memory array for small data and
    tests); ``rows`` are ascending positions into it. Nothing here copies more than one batch of pixels.
    """

    pixels: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    hashes: np.ndarray | None = None  # HASH_DTYPE per row; None: computed from the pixels when asked
    original_sizes: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls, images: np.ndarray, labels: np.ndarray, original_sizes: np.ndarray | None = None
    ) -> ImageRows:
        """All rows of in-memory arrays (any dtype: the data-quality checks are tested on floats too)."""
        import numpy as np
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or len(images) != len(labels):
            raise PixelStoreError(f"images {images.shape} and labels {labels.shape} do not match")
        return cls(images, np.arange(len(images), dtype=np.int64), labels.astype(np.int64, copy=False),
                   None, None if original_sizes is None else np.asarray(original_sizes, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), *self.pixels.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.pixels.dtype

    @property
    def nbytes(self) -> int:
        import numpy as np
        return int(np.prod(self.shape)) * self.pixels.dtype.itemsize

    def images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Pixels of rows ``start:stop`` of this selection, as a new array (a slice of the map when contiguous)."""
        import numpy as np
        rows = self.rows[start:stop]
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1:
            return np.array(self.pixels[rows[0] : rows[-1] + 1])
        return self.pixels[rows]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Pixels of the given positions of this selection (e.g. a shuffled training batch)."""
        import numpy as np
        return self.pixels[self.rows[np.asarray(positions)]]

    def training_images(self, positions: np.ndarray) -> np.ndarray:
        """The training-scale images (float32) at ``positions`` of this selection, in that order: a handful of rows
        (a seeded sample, the worst mistakes), read where they are, not by scanning the split."""
        import numpy as np

        from mlops_assets.core.data.images import to_training_scale

        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return np.empty((0, *self.pixels.shape[1:]), dtype=np.float32)
        return to_training_scale(self.take(positions))

    def batches(self, batch_size: int = DEFAULT_BATCH) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, pixels)`` for consecutive batches of at most ``batch_size`` rows."""
        for start in range(0, len(self.rows), batch_size):
            yield start, self.images(start, start + batch_size)

    def training_batches(self, batch_size: int = DEFAULT_BATCH) -> Iterator[tuple[int, np.ndarray]]:
        """Like :meth:`batches`, converted to the training scale (float32 in [0, 1]) one batch at a time."""
        from mlops_assets.core.data.images import to_training_scale

        for start, batch in self.batches(batch_size):
            yield start, to_training_scale(batch)

    def pixel_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row: min, max and mean of its pixels and its NaN count (floats: NaN-aware), a batch at a time."""
        import numpy as np
        n = len(self)
        pixel_min, pixel_max, pixel_mean = np.empty(n), np.empty(n), np.empty(n)
        n_nan = np.zeros(n, dtype=np.int64)
        for start, batch in self.batches():
            flat, stop = batch.reshape(len(batch), -1), start + len(batch)
            if np.issubdtype(flat.dtype, np.floating):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN images give NaN stats
                    pixel_min[start:stop], pixel_max[start:stop] = np.nanmin(flat, axis=1), np.nanmax(flat, axis=1)
                    pixel_mean[start:stop] = np.nanmean(flat, axis=1)
                n_nan[start:stop] = np.isnan(flat).sum(axis=1)
            else:
                pixel_min[start:stop], pixel_max[start:stop] = flat.min(axis=1), flat.max(axis=1)
                pixel_mean[start:stop] = flat.mean(axis=1)
        return pixel_min, pixel_max, pixel_mean, n_nan

    def select(self, positions: np.ndarray) -> ImageRows:
        """The rows at ``positions`` (ascending) of this selection, e.g. a test split less some images."""
        import numpy as np
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        return ImageRows(
            self.pixels, self.rows[positions], self.labels[positions],
            None if self.hashes is None else self.hashes[positions],
            None if self.original_sizes is None else self.original_sizes[positions],
        )

    def hash_array(self, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Each row's content hash (:func:`~mlops_assets.core.data.images.image_hashes`), stored or computed by
        batch."""
        import numpy as np
        if self.hashes is not None:
            return self.hashes
        out = np.empty(len(self.rows), dtype=HASH_DTYPE)
        for start, batch in self.batches(batch_size):
            out[start : start + len(batch)] = image_hashes(batch)
        return out

    def hash_list(self) -> list[str]:
        return [digest.decode() for digest in self.hash_array()]


class PixelStoreWriter:
    """Appends decoded chunks to a new pixel store; :meth:`finish` writes the per-image arrays.

    Pixels go straight to ``pixels.u8`` as they come, so writing a dataset holds one chunk in memory.
    """

    def __init__(self, directory: Path, image_shape: Sequence[int]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.image_shape = tuple(int(v) for v in image_shape)
        self._file = open(self.directory / PIXELS, "wb")  # noqa: SIM115 - closed by finish()
        self._labels: list[np.ndarray] = []
        self._hashes: list[np.ndarray] = []
        self._sizes: list[np.ndarray] = []
        self.count = 0

    def append(self, images: np.ndarray, labels: np.ndarray, original_sizes: np.ndarray) -> None:
        import numpy as np
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.shape[1:] != self.image_shape or len(labels) != len(images) or len(original_sizes) != len(images):
            raise PixelStoreError(
                f"chunk of images {images.shape}, {len(labels)} labels and {len(original_sizes)} sizes does not fit "
                f"a store of {self.image_shape} images"
            )
        self._file.write(memoryview(images).cast("B"))
        self._labels.append(np.asarray(labels, dtype=np.int64))
        self._hashes.append(np.asarray(image_hashes(images), dtype=HASH_DTYPE))
        self._sizes.append(np.asarray(original_sizes, dtype=np.int64).reshape(-1, 2))
        self.count += len(images)

    def extend(self, chunks: Iterable[DecodedChunk]) -> None:
        for chunk in chunks:
            self.append(chunk.images, chunk.labels, chunk.original_sizes)

    def finish(self) -> ImageRows:
        """Close the pixel file, write the per-image arrays and the shape, and open what was written."""
        import numpy as np
        self._file.close()

        def joined(parts: list[np.ndarray], dtype, shape) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype=dtype)

        np.save(self.directory / LABELS, joined(self._labels, np.int64, (0,)))
        np.save(self.directory / HASHES, joined(self._hashes, HASH_DTYPE, (0,)))
        np.save(self.directory / SIZES, joined(self._sizes, np.int64, (0, 2)))
        shape = [self.count, *self.image_shape]
        (self.directory / PIXELS_SHAPE).write_text(json.dumps({"shape": shape, "dtype": "uint8"}))
        self._labels, self._hashes, self._sizes = [], [], []
        return open_pixel_store(self.directory)


def open_pixel_store(directory: str | Path) -> ImageRows:
    """Every row of the pixel store in ``directory``, its pixels memory-mapped read-only."""
    import numpy as np
    directory = Path(directory)
    try:
        shape = tuple(json.loads((directory / PIXELS_SHAPE).read_text())["shape"])
        labels = np.load(directory / LABELS)
        hashes = np.load(directory / HASHES)
        sizes = np.load(directory / SIZES)
    except FileNotFoundError as exc:
        raise PixelStoreError(f"{directory} is not a complete pixel store: {exc.filename} is missing") from exc
    expected = int(np.prod(shape))
    actual = (directory / PIXELS).stat().st_size
    if actual != expected or not (len(labels) == len(hashes) == len(sizes) == shape[0]):
        raise PixelStoreError(
            f"{directory}: {actual} pixel bytes, {len(labels)} labels, {len(hashes)} hashes and {len(sizes)} sizes "
            f"for {shape[0]} images of {shape[1:]} ({expected} bytes)"
        )
    # np.memmap refuses an empty file; an empty store is an empty array of the same shape.
    pixels = (np.memmap(directory / PIXELS, dtype=np.uint8, mode="r", shape=shape) if expected
              else np.zeros(shape, dtype=np.uint8))
    return ImageRows(pixels, np.arange(shape[0], dtype=np.int64), labels, hashes, sizes)
