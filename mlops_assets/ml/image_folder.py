"""Labelled image folders (one sub-folder per class), listed once and decoded in parallel, in order.

Decoding dominates reading a folder (about 70 µs an image for a small PNG, on one core), so it runs in a pool of
worker processes, each decoding a chunk of files; chunks come back in file order, so the result does not depend
on the number of workers. A bounded number of chunks is in flight, so memory holds a few chunks, never the folder.
Workers are started with ``spawn`` (a fork of a threaded Dagster process is unsafe) and import only this module's
light dependencies (numpy, PIL).
"""

from __future__ import annotations

import os
import sys
import types
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlops_assets.ml.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    DatasetError,
    ImageDataset,
    ImageDecodeError,
    PreprocessSpec,
    decode_image_with_size,
)
from mlops_assets.ml.pixel_store import DecodedChunk

CHUNK_FILES = 512  # files per worker task: large enough to amortise the round trip, small enough to stream
IN_FLIGHT_PER_WORKER = 4
# Starting a worker (a fresh interpreter importing numpy and PIL) costs about what decoding a few thousand small
# images does, so the automatic choice gives each worker at least this many files (BENCHMARKS.md, bench_scale).
FILES_PER_WORKER = 10_000


def default_workers(n_files: int) -> int:
    """One decoding process per core this process may run on, but at most one per :data:`FILES_PER_WORKER` files."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_files // FILES_PER_WORKER))


@dataclass
class FolderListing:
    """What a folder holds: class names (sorted sub-folders), the image files in label then name order, and
    every file that is not used, with why."""

    root: Path
    class_names: list[str]
    files: list[tuple[str, int]]  # (path relative to root, label)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def list_image_folder(root: str | Path) -> FolderListing:
    """List a folder with one sub-folder per class, refusing layouts a model would be meaningless on.

    Classes are the sub-folder names in sorted order, so label indices are stable across runs. Fewer than two
    classes, or a class folder that holds folders (nesting would be guessed, not read), is a
    :class:`DatasetError` naming the path. Files of other formats and files beside the class folders are
    listed in ``skipped`` with the reason.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DatasetError(
            f"image folder {root} has {len(class_dirs)} class sub-folder(s); at least two are needed "
            "(one sub-folder per class, e.g. cats/ and dogs/)"
        )
    nested = [p for d in class_dirs for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if nested:
        raise DatasetError(
            f"image folder {root}: class folders must hold image files, not folders; found "
            f"{', '.join(str(p.relative_to(root)) for p in nested[:5])}"
            + (f" and {len(nested) - 5} more" if len(nested) > 5 else "")
            + ". Each sub-folder of the root is one class: move nested classes up one level."
        )
    listing = FolderListing(root, [d.name for d in class_dirs], [])
    for stray in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        listing.skipped.append((str(stray), "a file beside the class folders belongs to no class"))
    for label, class_dir in enumerate(class_dirs):
        with os.scandir(class_dir) as entries:  # file types from the directory listing: no stat per file
            names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))
        for name in names:
            suffix = Path(name).suffix
            if suffix.lower() not in IMAGE_SUFFIXES:
                listing.skipped.append((str(class_dir / name), f"not an image file (suffix {suffix or 'none'}); "
                                                               f"read are: {' '.join(IMAGE_SUFFIXES)}"))
                continue
            listing.files.append((f"{class_dir.name}/{name}", label))
    return listing


def decode_files(root: str, files: list[tuple[str, int]], spec: dict[str, int], max_pixels: int) -> DecodedChunk:
    """Decode some files of a folder (one worker task); unreadable ones are skipped with the reason."""
    import numpy as np
    geometry = PreprocessSpec(**spec)
    images, labels, sizes, sources, skipped = [], [], [], [], []
    for relative, label in files:
        path = Path(root) / relative
        try:
            image, size = decode_image_with_size(path, geometry, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            skipped.append((str(path), str(exc.__cause__ or exc)))
            continue
        images.append(image)
        labels.append(label)
        sizes.append(size)
        sources.append(relative)
    shape = (len(images), geometry.channels, geometry.height, geometry.width)
    return DecodedChunk(
        images=np.stack(images) if images else np.zeros(shape, dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        original_sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
        sources=sources,
        skipped=skipped,
    )


def decode_folder(
    listing: FolderListing, spec: PreprocessSpec, min_per_class: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 0, chunk_files: int = CHUNK_FILES,
) -> Iterator[DecodedChunk]:
    """Decoded chunks of the listed files, in file order, by ``workers`` processes (1: this one; 0: automatic,
    :func:`default_workers`).

    After the last chunk, a class with fewer than ``min_per_class`` readable images raises :class:`DatasetError`,
    so a caller writing the chunks somewhere never publishes a dataset that cannot be trained on.
    """
    import numpy as np
    workers = workers or default_workers(len(listing.files))
    tasks = [(str(listing.root), listing.files[i : i + chunk_files], spec.as_dict(), max_pixels)
             for i in range(0, len(listing.files), chunk_files)]
    counts = np.zeros(len(listing.class_names), dtype=np.int64)
    skipped = 0
    for chunk in _decoded(tasks, workers):
        counts += np.bincount(chunk.labels, minlength=len(counts))
        skipped += len(chunk.skipped)
        yield chunk
    too_small = {name: int(n) for name, n in zip(listing.class_names, counts, strict=True) if n < min_per_class}
    if too_small:
        raise DatasetError(
            f"image folder {listing.root}: classes with fewer than {min_per_class} readable image(s): {too_small}"
            + (f"; {skipped + len(listing.skipped)} file(s) could not be read" if skipped + len(listing.skipped)
               else "")
        )


def _decoded(tasks: list[tuple], workers: int) -> Iterator[DecodedChunk]:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield decode_files(*task)
        return
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context)
    try:
        pending: deque = deque()
        queued = iter(tasks)
        with _without_main_module():  # the first submissions start every worker
            for task in queued:
                pending.append(pool.submit(decode_files, *task))
                if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                    break
        while pending:
            chunk = pending.popleft().result()
            next_task = next(queued, None)
            if next_task is not None:
                pending.append(pool.submit(decode_files, *next_task))
            yield chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _without_main_module() -> Iterator[None]:
    """Start spawned workers without the parent's ``__main__``.

    A spawned worker first re-runs the parent's main script: for a console script (``dagster``, ``pytest``) that
    imports its whole package (seconds per worker), and a user's script without an ``if __name__ ==
    "__main__"`` guard would start the build again and fail. Decoding needs none of it, so while workers start,
    ``__main__`` is a bare module.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def load_image_folder(
    root: str | Path, spec: PreprocessSpec, min_per_class: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> ImageDataset:
    """A whole folder decoded into memory (small folders: tests, the simulator); the build streams instead."""
    import numpy as np
    listing = list_image_folder(root)
    chunks = list(decode_folder(listing, spec, min_per_class, max_pixels, workers))
    shape = (0, spec.channels, spec.height, spec.width)
    return ImageDataset(
        images=np.concatenate([c.images for c in chunks]) if chunks else np.zeros(shape, dtype=np.uint8),
        labels=np.concatenate([c.labels for c in chunks]) if chunks else np.zeros(0, dtype=np.int64),
        class_names=listing.class_names,
        spec=spec,
        sources=[s for c in chunks for s in c.sources],
        skipped=listing.skipped + [s for c in chunks for s in c.skipped],
        original_sizes=(np.concatenate([c.original_sizes for c in chunks]) if chunks
                        else np.zeros((0, 2), dtype=np.int64)),
    )
